"""Inputs of the paper grid's slice (bench/workflow/grid_slice/run.sh): speakers' files, random models,
stand-in TTS speech.

    python bench/workflow/grid_slice/inputs.py carry [--shared ../shared/genda25]   # here, once
    python bench/workflow/grid_slice/inputs.py models .gridslice/models
    python bench/workflow/grid_slice/inputs.py generalist .gridslice/generalist_medium.pt
    python bench/workflow/grid_slice/inputs.py weights
    python bench/workflow/grid_slice/inputs.py speech .gridslice/speech --durations DURATIONS.json

`carry` (on a machine with flite, from the local copy of the challenge release) writes the speakers'
own files into .carry_grid/ and the released tiny and small generalists, less their optimizer state,
into .carry_grid_ckpt/: the folders a device call carries (.git/info/exclude ignores both). Three
challenge speakers:

- F0 and M1 (real): the challenge's enrollment clip; sentences = their 50 challenge sentences (their
  own LibriTTS transcripts) then the 200 additional (LJSpeech) ones, so 6min and 30min take what the
  challenge's own sentence lists give them. LibriTTS is not available offline, so their real speech
  (`gt`, 50 utterances: their 50 sentences) and clean test recordings (`test_clean`, 9 utterances:
  additional sentences 191-199, which no data size reads) are flite speech (F0: slt, M1: rms).
- VirtualM3 (virtual): the challenge's enrollment clip, the virtual speakers' shared 50 sentences then
  the 200 additional; `test_mixtures` = the challenge's 45 test mixtures of VirtualM3.
- Noises: MUSAN is not available offline: 5 noises per speaker from the demo world's generator
  (workflow_scripts.world.noises, 8 s each), in place of the speaker's 5 MUSAN sound-bible files.

Audio is written as Ogg Vorbis (the carry is limited in size; the steps read it through soundfile), so
the enrollment clips and the VirtualM3 mixtures are the released ones re-encoded.

`models` builds, with random weights, the released architectures the config loads
(workflow_scripts/testing/tiny_models.py, as bench/tts/rtf_*.py and bench/scoring/rate.py build them):
XTTS-v2 (xtts_v2's sizes, its audio-position table cut to XTTS_AUDIO_TOKENS: see below), YourTTS,
SpeechT5 + HiFi-GAN, the speechbrain x-vector (SpeechT5's speaker encoder and the second SECS) at the
released sizes, and Whisper of large-v3's dimensions (fp16) with its text context cut to
WHISPER_TEXT_CTX positions. Random weights know nothing of when to stop, and a model that never stops
costs what real speech never would: XTTS's GPT would run to its 602-code limit (28 s an utterance) and
Whisper's decoder to 224 tokens a window. The cuts make the random models stop where speech of these
sentences would: XTTS at most 168 codes (7.8 s, the 30min size's 30 minutes over 230 sentences), Whisper
at 34 tokens a window (n_text_ctx // 2, the cap bench/scoring/rate.py measured with). Neither cut
changes the work per code or token. SpeechT5 and YourTTS take their stopping from the config
(threshold 3 and maxlenratio 4.5; length_scale 0.96), as their speed benches do. The random
HiFi-GAN's audio peaks near 3e-5, below the synthesis step's silence check (1e-4: every utterance
retried, then refused), so its last convolution is scaled by VOCODER_OUTPUT_SCALE: the same work,
audible output.
`weights` (on the GPU machine, after the carried wheels are installed) writes random weights of the
released shapes into the installed Resemblyzer and DistillMOS packages, whose weights the carry leaves
out (wheels.sh).
`generalist` writes a random ConvTasNet medium checkpoint: the challenge's medium generalist is not in
the local copy of its release (tiny and small are the released ones).

`speech` writes stand-in speech of TTS systems (`--systems`) for a later call: for each system and
speaker, 230 numbered voiced clips (the voice-like signal of bench/tts/common.py), one per
sentence, each as long as that system's utterances were on average in the synthesis call (the
`--durations` JSON: system -> seconds), read by the workflow's `folder` TTS backend.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

SPEAKERS = {"F0": ("real", "slt"), "M1": ("real", "rms"), "VirtualM3": ("virtual", None)}
SYSTEMS = ("yourtts", "speecht5", "xtts")
NUM_GT = 50
TEST_SENTENCES = slice(190, 199)  # additional sentences 191-199: read by no data size (30min takes 180)
NUM_NOISES, NOISE_SECONDS = 5, 8.0
NUM_SPEECH = 230  # the 30min size: 220 + 10
XTTS_AUDIO_TOKENS = 171  # 168 codes + start, stop and one more position, as 605 gives 602
WHISPER_TEXT_CTX = 68
VOCODER_OUTPUT_SCALE = 1.0e4


def write_ogg(path: Path, audio: np.ndarray, sample_rate: int = 16000) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.clip(audio, -1.0, 1.0), sample_rate, format="OGG", subtype="VORBIS", compression_level=1.0)


def challenge_sentences(shared: Path, speaker: str) -> tuple[list[str], list[str]]:
    """The speaker's 50 challenge sentences and its 200 additional ones, in the release's order."""
    def of(name: str) -> list[str]:
        rows = [line.split("\t", 1) for line in (shared / "text" / name).read_text().splitlines() if line]
        return [text.strip() for ref, text in rows if ref.split("/", 1)[0] == speaker]

    own, additional = of("synth_sentences.txt"), of("synth_sentences_additional.txt")
    if len(own) != 50 or len(additional) != 200:
        raise SystemExit(f"{shared}/text: {speaker} has {len(own)} sentences and {len(additional)} additional")
    return own, additional


def carry(shared: Path, out: Path, ckpt_out: Path) -> None:
    import soundfile as sf

    from workflow_scripts.world.noises import draw_noise_set
    from workflow_scripts.world.voices import render_flite

    for folder in (out, ckpt_out):
        shutil.rmtree(folder, ignore_errors=True)
    for index, (speaker, (group, voice)) in enumerate(SPEAKERS.items()):
        folder = out / speaker
        folder.mkdir(parents=True)
        enrollment, sample_rate = sf.read(shared / "enrollment" / f"{speaker}_ref.wav", dtype="float32")
        write_ogg(folder / "enrollment.ogg", enrollment, sample_rate)
        own, additional = challenge_sentences(shared, speaker)
        (folder / "sentences.txt").write_text("\n".join(own + additional) + "\n")
        rng = np.random.default_rng(1000 + index)
        for noise in draw_noise_set(rng, NUM_NOISES, NOISE_SECONDS, sentences=additional[:20]):
            write_ogg(folder / "noises" / f"{noise['name']}.ogg", noise["audio"])
        if group == "real":
            for number, text in enumerate(own[:NUM_GT]):
                write_ogg(folder / "gt" / f"{number:02d}.ogg", render_flite(text, voice))
                (folder / "gt" / f"{number:02d}.txt").write_text(text + "\n")
            for number, text in enumerate(additional[TEST_SENTENCES]):
                write_ogg(folder / "test_clean" / f"{number:02d}.ogg", render_flite(text, voice))
        else:
            for wav in sorted((shared / "test_mixtures" / speaker).glob("*.wav")):
                audio, sample_rate = sf.read(wav, dtype="float32")
                write_ogg(folder / "test_mixtures" / f"{wav.stem}.ogg", audio, sample_rate)
    import torch

    ckpt_out.mkdir(parents=True)
    for size in ("tiny", "small"):  # the released checkpoints less their optimizer state (never read)
        checkpoint = torch.load(shared / "checkpoints" / f"convtasnet_{size}.pt", map_location="cpu", weights_only=False)
        checkpoint.pop("optimizer_state_dict", None)
        torch.save(checkpoint, ckpt_out / f"convtasnet_{size}.pt")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {total / 2**20:.1f} MiB; {ckpt_out}: generalists tiny, small")


def scale_vocoder_output(folder: Path, factor: float = VOCODER_OUTPUT_SCALE) -> None:
    """Multiply the HiFi-GAN's last convolution by `factor` (random weights: see the docstring)."""
    import torch
    from transformers import SpeechT5HifiGan

    vocoder = SpeechT5HifiGan.from_pretrained(str(folder))
    with torch.no_grad():
        vocoder.conv_post.weight.mul_(factor)
    vocoder.save_pretrained(str(folder))


def models(out: Path, only: list[str] | None = None, tiny: bool = False) -> None:
    import dataclasses
    import time

    import torch

    from bench.scoring.rate import LARGE_V3_DIMS
    from bench.tts.common import first_sentences
    from workflow_scripts.testing import tiny_models as tm

    out.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    xtts = {} if tiny else dict(tm.XTTS_V2_SIZES, max_audio_tokens=XTTS_AUDIO_TOKENS)
    whisper_dims = dataclasses.asdict(tm.tiny_whisper_dims(True)) if tiny else LARGE_V3_DIMS
    builds = {
        "xtts": lambda: tm.build_xtts(out / "xtts", **xtts),
        "yourtts": lambda: tm.build_yourtts(out / "yourtts", **({} if tiny else tm.YOURTTS_SIZES)),
        "speecht5_tts": lambda: tm.build_speecht5_tts(out / "speecht5_tts", tiny=tiny, sentences=first_sentences()),
        "speecht5_hifigan": lambda: (tm.build_speecht5_hifigan(out / "speecht5_hifigan", tiny=tiny),
                                     scale_vocoder_output(out / "speecht5_hifigan")),
        "xvector": lambda: tm.build_tiny_xvector(out / "xvector", 0, tiny),
        "whisper": lambda: build_whisper(out / "whisper", whisper_dims, cuda and not tiny),
    }
    for name, build in builds.items():
        if only and name not in only:
            continue
        start = time.perf_counter()
        build()
        print(f"built {name} in {time.perf_counter() - start:.1f} s", flush=True)


def package_weights() -> None:
    """Random weights, of the released shapes, where the carried Resemblyzer and DistillMOS wheels left
    their weights out (wheels.sh): the packages load them from their own folders, as released."""
    import importlib
    import importlib.util

    import torch
    from torch import nn

    torch.manual_seed(0)
    resemblyzer = Path(importlib.util.find_spec("resemblyzer").origin).parent
    hp = importlib.import_module("resemblyzer.hparams")
    encoder = nn.Module()
    encoder.lstm = nn.LSTM(hp.mel_n_channels, hp.model_hidden_size, hp.model_num_layers, batch_first=True)
    encoder.linear = nn.Linear(hp.model_hidden_size, hp.model_embedding_size)
    encoder.similarity_weight = nn.Parameter(torch.tensor([10.0]))  # training-time only, as released
    encoder.similarity_bias = nn.Parameter(torch.tensor([-5.0]))
    torch.save({"model_state": encoder.state_dict()}, resemblyzer / "pretrained.pt")
    from distillmos import sqa

    Path(sqa.DEFAULT_WEIGHTS_CHKPT).parent.mkdir(parents=True, exist_ok=True)
    predictor = sqa.ConvTransformerSQAModel(load_weights=False)
    torch.save({"model": predictor.state_dict()}, sqa.DEFAULT_WEIGHTS_CHKPT)
    print(f"random weights: {resemblyzer / 'pretrained.pt'}, {sqa.DEFAULT_WEIGHTS_CHKPT}")


def generalist(path: Path) -> None:
    import torch

    from workflow_scripts.model.convtasnet import build_model, save_checkpoint

    torch.manual_seed(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, build_model("medium"))
    print(f"built a random ConvTasNet medium generalist: {path}")


def build_whisper(folder: Path, dims: dict, cuda: bool) -> Path:
    """Whisper of large-v3's dimensions, text context cut to WHISPER_TEXT_CTX, fp16 on a GPU as released."""
    import torch
    from whisper.model import ModelDimensions

    from workflow_scripts.testing.tiny_models import build_tiny_whisper

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float16 if cuda else torch.float32)
    try:
        with torch.device("cuda" if cuda else "cpu"):
            return build_tiny_whisper(folder, "large-v3-random.pt",
                                      dims=ModelDimensions(**dict(dims, n_text_ctx=WHISPER_TEXT_CTX)))
    finally:
        torch.set_default_dtype(previous)


def _write_clips(job: tuple[Path, float, int, int]) -> None:
    from bench.tts.common import voiced_clip
    from workflow_scripts.files.audio import write_audio

    folder, seconds, count, seed = job
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        write_audio(folder / f"{number:03d}.wav", voiced_clip(seconds, seed=seed + number))


def speech(out: Path, durations: dict[str, float], count: int, workers: int, speakers: list[str]) -> None:
    jobs = [(out / system / speaker, float(durations[system]), count, 10_000 * index)
            for index, (system, speaker) in enumerate((s, p) for s in durations for p in speakers)]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_write_clips, jobs))
    print(f"{out}: {len(jobs)} folders of {count} clips ({json.dumps(durations)} s each)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("carry")
    p.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "genda25")
    p.add_argument("--out", type=Path, default=REPO / ".carry_grid")
    p.add_argument("--ckpt-out", type=Path, default=REPO / ".carry_grid_ckpt")
    p = sub.add_parser("models")
    p.add_argument("out", type=Path)
    p.add_argument("--only", nargs="+", default=None, help="build only these (default: all)")
    p.add_argument("--tiny", action="store_true", help="the tests' tiny sizes (a smoke run on the CPU)")
    p = sub.add_parser("generalist")
    p.add_argument("path", type=Path)
    sub.add_parser("weights")
    p = sub.add_parser("speech")
    p.add_argument("out", type=Path)
    p.add_argument("--durations", type=Path, default=None, help="JSON: system -> seconds per utterance")
    p.add_argument("--seconds", type=float, default=7.8, help="every system's length without --durations")
    p.add_argument("--count", type=int, default=NUM_SPEECH)
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS))
    p.add_argument("--speakers", nargs="+", default=list(SPEAKERS))
    args = parser.parse_args()
    if args.what == "carry":
        carry(args.shared, args.out, args.ckpt_out)
    elif args.what == "models":
        models(args.out, args.only, args.tiny)
    elif args.what == "generalist":
        generalist(args.path)
    elif args.what == "weights":
        package_weights()
    else:
        durations = json.loads(args.durations.read_text()) if args.durations else {}
        speech(args.out, {s: durations.get(s, args.seconds) for s in args.systems}, args.count, args.workers,
               args.speakers)


if __name__ == "__main__":
    main()
