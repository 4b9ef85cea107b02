"""F5-TTS and Chatterbox synthesis speed: real-time factor of the workflow's f5tts and chatterbox backends.

    python bench/tts/modern_rtf.py --device cuda --out-json modern_rtf.json
    python bench/tts/modern_rtf.py --dry-run        # the plan, and the packages this machine lacks
    python bench/tts/modern_rtf.py --sizes tiny --device cpu --num-sentences 2 --f5-batch-sizes 1 2 \\
        --chatterbox-sentences 1 --nfe-step 4      # a check on a CPU (tests/tts/test_modern_rtf_bench.py)

Both models are built at their released sizes with random weights in a temporary folder, by the
functions that build the tests' tiny checkpoints (workflow_scripts/testing/tiny_f5tts.py:
F5TTS_v1_Base's DiT and charactr/vocos-mel-24khz's Vocos; tiny_chatterbox.py: chatterbox-tts's own
T3(), S3Gen() and voice encoder), and loaded by the backends from those folders as local models,
so nothing is downloaded: F5-TTS as F5-TTS's load_model puts it (half precision on a GPU),
Chatterbox as chatterbox-tts runs it (float32). The conditioning is the backend's own, from an 8 s
synthetic voiced clip (bench/tts/common.py), F5-TTS's with a transcript of the pace of read speech
(14 characters a second) given as the speaker sheet gives it; the sentences are the first lines of
workflow_scripts/data/sentences.txt, the same ones and the same seeds for every run.

F5-TTS: each of --f5-batch-sizes is the backend's max_batch and the texts per synthesize_batch call
(the step's batch_size) together, measured in turn on the same loaded model, with nfe_step 32 (the
backend's default). Its lengths do not depend on the weights: a piece gets mel frames in
proportion to its characters, at the reference's pace.
Chatterbox: one utterance at a time (its T3 samples one text at a time). Random weights almost
never sample T3's stop token, so each sentence's max_new_tokens is the speech tokens (25 a second)
of the sentence read at 14 characters a second: the T3 work of that sentence. The tokens that are
no S3 speech code (random weights sample them, a trained T3 hardly does) are dropped before S3Gen,
as the backend drops them, so the audio made is shorter than the tokens' time. Reported: RTF =
synthesis seconds per second of audio made (text in, 24 kHz audio on the host out; the step's
resampling to 16 kHz is not timed), and Chatterbox's T3, S3Gen and watermark times apart.
The verdict projects the synthesis of configs/genda2025_modern.yaml: the largest data size of
configs/genda2025.yaml for each of its speakers, at this bench's mean utterance length.

Packages: f5-tts 1.1.22 and chatterbox-tts 0.1.7 (the Makefile installs both with --no-deps) and
what their modules import on this path. Beside torch, torchaudio, torchdiffeq, transformers,
tokenizers, safetensors, huggingface_hub, numpy, scipy, numba, scikit-learn, matplotlib, pyyaml,
einops and setuptools < 81 (resemble-perth imports pkg_resources), that is: f5-tts,
chatterbox-tts, x-transformers, einx, frozendict, loguru, torch-einops-utils, vocos, encodec,
pypinyin, rjieba, pydub, librosa, audioread, decorator, pooch, platformdirs, soundfile, cffi,
pycparser, soxr, conformer, diffusers, s3tokenizer, omegaconf and resemble-perth: carry the ones a
GPU machine lacks as wheels, installed with --no-deps (--dry-run checks MODULES and names them).
F5-TTS's model package also imports its trainer (wandb, datasets, accelerate, ema-pytorch), which
inference never uses: where one of those is missing, an empty module stands in for
f5_tts.model.trainer, so they need not be carried.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.tts.common import REPO, first_sentences, synchronize, voiced_clip  # noqa: E402

# module -> distribution, for --dry-run: what the built and loaded backends import on this path
MODULES = {
    "torch": "torch", "torchaudio": "torchaudio", "numpy": "numpy", "scipy": "scipy", "soundfile": "soundfile",
    "yaml": "pyyaml", "librosa": "librosa", "transformers": "transformers", "safetensors": "safetensors",
    "tokenizers": "tokenizers", "huggingface_hub": "huggingface_hub", "f5_tts": "f5-tts==1.1.22",
    "x_transformers": "x-transformers", "torchdiffeq": "torchdiffeq", "vocos": "vocos", "pypinyin": "pypinyin",
    "rjieba": "rjieba", "pydub": "pydub", "matplotlib": "matplotlib", "chatterbox": "chatterbox-tts==0.1.7",
    "conformer": "conformer", "diffusers": "diffusers", "s3tokenizer": "s3tokenizer", "perth": "resemble-perth",
    "pkg_resources": "setuptools<81", "omegaconf": "omegaconf", "einx": "einx", "frozendict": "frozendict",
    "loguru": "loguru", "torch_einops_utils": "torch-einops-utils", "encodec": "encodec", "audioread": "audioread",
    "pooch": "pooch", "soxr": "soxr", "cffi": "cffi", "pycparser": "pycparser", "decorator": "decorator",
    "platformdirs": "platformdirs",
}
# what f5_tts.model.trainer imports, for training only (see the module docstring)
F5_TRAINER_MODULES = {"wandb": "wandb", "datasets": "datasets", "accelerate": "accelerate",
                      "ema_pytorch": "ema-pytorch"}
CHARS_PER_S = 14.0  # the pace of read speech the sentences are given
SPEECH_TOKENS_PER_S = 25  # Chatterbox's S3 speech tokens
ENROLLMENT_S = 8.0
# what the synthetic clip says, for F5-TTS: CHARS_PER_S x ENROLLMENT_S characters
ENROLLMENT_TEXT = ("The quick brown fox jumps over the lazy dog, and then it runs back home across "
                   "the wide green field before dark.")
TINY_F5 = {"nfe_step": 4}


def missing(modules: dict[str, str]) -> list[str]:
    """The distributions of the modules that cannot be imported here."""
    def absent(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is None
        except (ImportError, ValueError):
            return True

    return sorted({dist for module, dist in modules.items() if absent(module)})


def without_f5_trainer() -> list[str]:
    """Where F5-TTS's trainer cannot be imported here, an empty module in its place (so that
    f5_tts.model imports: inference never uses it); the missing distributions."""
    import types

    absent = missing(F5_TRAINER_MODULES)
    if absent and "f5_tts.model.trainer" not in sys.modules:
        trainer = types.ModuleType("f5_tts.model.trainer")
        trainer.Trainer = None
        sys.modules["f5_tts.model.trainer"] = trainer
    return absent


def sentence_tokens(text: str) -> int:
    """Chatterbox's speech tokens for `text` read at CHARS_PER_S."""
    return max(1, round(SPEECH_TOKENS_PER_S * len(text) / CHARS_PER_S))


def timed(device: str, fn, *args, **kwargs):
    """(fn(*args, **kwargs), wall seconds with the device's queue drained)."""
    synchronize(device)
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    synchronize(device)
    return out, time.perf_counter() - start


def peak_memory(device: str, reset: bool = False) -> float | None:
    import torch

    if not device.startswith("cuda"):
        return None
    if reset:
        torch.cuda.reset_peak_memory_stats()
        return None
    return torch.cuda.max_memory_allocated() / 2**30


def parameters_m(*modules) -> float:
    return sum(p.numel() for module in modules for p in module.parameters()) / 1e6


def bench_f5tts(args, texts: list[str], folder: Path, enrollment) -> dict:
    """F5-TTS at each batch size: RTF, the same texts and seeds."""
    from workflow_scripts.testing.tiny_f5tts import build_f5tts, build_vocos
    from workflow_scripts.tts import EnrollmentText, get_backend

    released = args.sizes == "released"
    result: dict = {}
    start = time.perf_counter()
    model = build_f5tts(folder / "F5TTS_v1_Base", **({"arch": None} if released else {}))
    vocoder = build_vocos(folder / "vocos", **({"sizes": None} if released else {}))
    result["build_s"] = time.perf_counter() - start
    backend = get_backend("f5tts", device=args.device, model=model, vocoder=vocoder, nfe_step=args.nfe_step,
                          max_batch=max(args.f5_batch_sizes), model_dir=str(folder))
    _, result["load_s"] = timed(args.device, lambda: (backend.model, backend.vocoder))
    result["parameters_m"] = {"dit": parameters_m(backend.model), "vocos": parameters_m(backend.vocoder)}
    result["dtype"] = str(next(backend.model.parameters()).dtype)
    conditioning, result["conditioning_s"] = timed(
        args.device, backend.compute_conditioning, enrollment, 16000, enrollment_text=EnrollmentText(ENROLLMENT_TEXT))
    result["reference_s"] = len(conditioning["reference_audio"]) / conditioning["reference_sample_rate"]
    _, result["warmup_s"] = timed(args.device, backend.synthesize_batch, ["Hello there."], conditioning, [12345])
    runs = []
    for batch_size in args.f5_batch_sizes:
        backend.max_batch = batch_size  # what the backend's max_batch option sets
        if batch_size > 1:  # warm-up at this batch size, short texts
            backend.synthesize_batch(["Hello there."] * batch_size, conditioning, list(range(batch_size)))
        peak_memory(args.device, reset=True)
        audio_s, synth_s = 0.0, 0.0
        for first in range(0, len(texts), batch_size):
            batch = texts[first:first + batch_size]
            audio, seconds = timed(args.device, backend.synthesize_batch, batch, conditioning,
                                   list(range(first, first + len(batch))))
            audio_s += sum(a.size for a in audio) / backend.sample_rate
            synth_s += seconds
        runs.append({"batch_size": batch_size, "texts": len(texts), "audio_s": audio_s, "synth_s": synth_s,
                     "rtf": synth_s / audio_s, "peak_gpu_mem_gb": peak_memory(args.device)})
        print(f"f5tts batch {batch_size}: RTF {runs[-1]['rtf']:.4f} ({audio_s:.1f} s of audio in {synth_s:.1f} s)",
              flush=True)
    result["runs"] = runs
    return result


def instrument_chatterbox(tts, device: str, log: dict) -> None:
    """Time T3's sampling, S3Gen and the watermark of every piece, and count T3's tokens
    (instance-level wrappers)."""
    t3_inference, s3gen_inference, watermark = tts.t3.inference, tts.s3gen.inference, tts.watermarker.apply_watermark

    def t3(*args, **kwargs):
        tokens, seconds = timed(device, t3_inference, *args, **kwargs)
        log["t3_s"] += seconds
        log["t3_tokens"] += int(tokens.shape[-1])
        return tokens

    def s3gen(*args, **kwargs):
        out, seconds = timed(device, s3gen_inference, *args, **kwargs)
        log["s3gen_s"] += seconds
        return out

    def watermarked(*args, **kwargs):
        out, seconds = timed(device, watermark, *args, **kwargs)
        log["watermark_s"] += seconds
        return out

    tts.t3.inference, tts.s3gen.inference, tts.watermarker.apply_watermark = t3, s3gen, watermarked


def bench_chatterbox(args, texts: list[str], folder: Path, enrollment) -> dict:
    """Chatterbox one utterance at a time: RTF, and T3, S3Gen and the watermark apart."""
    from workflow_scripts.testing.tiny_chatterbox import build_chatterbox
    from workflow_scripts.tts import get_backend

    result: dict = {}
    start = time.perf_counter()
    model = build_chatterbox(folder / "chatterbox", **({"sizes": None} if args.sizes == "released" else {}))
    result["build_s"] = time.perf_counter() - start
    backend = get_backend("chatterbox", device=args.device, model=model, model_dir=str(folder))
    tts, result["load_s"] = timed(args.device, lambda: backend.tts)
    result["parameters_m"] = {"t3": parameters_m(tts.t3), "s3gen": parameters_m(tts.s3gen), "ve": parameters_m(tts.ve)}
    result["watermarker"] = type(tts.watermarker).__name__
    conditioning, result["conditioning_s"] = timed(args.device, backend.compute_conditioning, enrollment, 16000)
    log = dict.fromkeys(("t3_s", "t3_tokens", "s3gen_s", "watermark_s"), 0)
    instrument_chatterbox(tts, args.device, log)
    backend.max_new_tokens = 10
    _, result["warmup_s"] = timed(args.device, backend.synthesize, "Hello there.", conditioning, 12345)
    for key in log:
        log[key] = 0
    peak_memory(args.device, reset=True)
    audio_s, synth_s, budget = 0.0, 0.0, 0
    for seed, text in enumerate(texts):
        backend.max_new_tokens = sentence_tokens(text)  # what the backend's max_new_tokens option sets
        budget += backend.max_new_tokens
        audio, seconds = timed(args.device, backend.synthesize, text, conditioning, seed)
        audio_s += audio.size / backend.sample_rate
        synth_s += seconds
    result.update(texts=len(texts), audio_s=audio_s, synth_s=synth_s, rtf=synth_s / audio_s, token_budget=budget,
                  token_s=log["t3_tokens"] / SPEECH_TOKENS_PER_S, ms_per_t3_token=1000 * log["t3_s"] / log["t3_tokens"],
                  peak_gpu_mem_gb=peak_memory(args.device), **log)
    print(f"chatterbox: RTF {result['rtf']:.4f} ({audio_s:.1f} s of audio in {synth_s:.1f} s; T3 {log['t3_s']:.1f} s "
          f"for {log['t3_tokens']} tokens, S3Gen {log['s3gen_s']:.1f} s, watermark {log['watermark_s']:.1f} s)",
          flush=True)
    return result


def grid_projection(utterance_s: float) -> dict:
    """Speech per system in configs/genda2025_modern.yaml: the largest data size for every speaker."""
    import yaml

    config = yaml.safe_load((REPO / "configs" / "genda2025.yaml").read_text())
    sheet = (REPO / "configs" / "genda2025_speakers.tsv").read_text().splitlines()
    speakers = sum(1 for line in sheet if line.strip() and not line.startswith("#")) - 1  # less the header
    utterances = max(size["train"] + size["val"] for size in config["data_sizes"].values())
    return {"speakers": speakers, "utterances_per_speaker": utterances,
            "speech_h": speakers * utterances * utterance_s / 3600}


def verdict(result: dict) -> list[str]:
    lines = []
    f5 = result.get("f5tts")
    mean_s = []
    if f5:
        runs = f5["runs"]
        best = min(runs, key=lambda run: run["rtf"])
        one = next((run for run in runs if run["batch_size"] == 1), runs[0])
        mean_s.append(best["audio_s"] / best["texts"])
        lines.append(f"F5-TTS: RTF {best['rtf']:.4f} at batch {best['batch_size']}, "
                     f"{one['rtf'] / best['rtf']:.2f} x batch {one['batch_size']}"
                     + (" (batching pays: keep tts.f5tts.batch_size and options.max_batch there)"
                        if one["rtf"] / best["rtf"] >= 1.5 else " (batching gains little here)"))
    cb = result.get("chatterbox")
    if cb:
        mean_s.append(cb["token_s"] / cb["texts"])
        lines.append(f"Chatterbox: RTF {cb['rtf']:.4f} one at a time; T3 sampling "
                     f"{100 * cb['t3_s'] / cb['synth_s']:.0f} % "
                     f"of it ({cb['ms_per_t3_token']:.1f} ms a token, {1000 / SPEECH_TOKENS_PER_S:.0f} ms of speech)")
    if mean_s:
        grid = grid_projection(sum(mean_s) / len(mean_s))
        result["grid"] = grid
        hours = {"F5-TTS": f5 and min(run["rtf"] for run in f5["runs"]), "Chatterbox": cb and cb["rtf"]}
        lines.append(f"grid ({grid['speakers']} speakers x {grid['utterances_per_speaker']} utterances, "
                     f"{grid['speech_h']:.1f} h of speech a system): "
                     + ", ".join(f"{name} {rtf * grid['speech_h']:.2f} GPU-h" for name, rtf in hours.items() if rtf))
    return lines


def dry_run(args) -> int:
    print("dry run: nothing is built or timed")
    print(f"systems: {' '.join(args.systems)}; sizes: {args.sizes}; device: {args.device}")
    if "f5tts" in args.systems:
        print(f"f5tts: {args.num_sentences} sentences in batches of {' '.join(map(str, args.f5_batch_sizes))}, "
              f"nfe_step {args.nfe_step}")
    if "chatterbox" in args.systems:
        print(f"chatterbox: {args.chatterbox_sentences} sentences one at a time, T3 tokens at "
              f"{CHARS_PER_S:g} characters a second")
    absent = missing(MODULES)
    problems = [f"carry as wheels (--no-deps): {' '.join(absent)}"] if absent else []
    trainer = missing(F5_TRAINER_MODULES)
    if trainer and "f5tts" in args.systems:
        print(f"F5-TTS's trainer: {' '.join(trainer)} missing, an empty f5_tts.model.trainer stands in")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            problems.append(f"--device {args.device}: CUDA is not available here")
    print("ready: yes" if not problems else "ready: no (" + "; ".join(problems) + ")")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sizes", choices=["released", "tiny"], default="released")
    parser.add_argument("--systems", nargs="+", choices=["f5tts", "chatterbox"], default=["f5tts", "chatterbox"])
    parser.add_argument("--num-sentences", type=int, default=16, help="F5-TTS's sentences")
    parser.add_argument("--f5-batch-sizes", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--nfe-step", type=int, default=None, help="F5-TTS's flow steps (default 32; tiny: 4)")
    parser.add_argument("--chatterbox-sentences", type=int, default=4)
    parser.add_argument("--out-json", type=Path, default=None)
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan and what this machine lacks; run nothing")
    args = parser.parse_args(argv)
    if min(args.f5_batch_sizes) < 1 or args.num_sentences < 1 or args.chatterbox_sentences < 1:
        parser.error("batch sizes and sentence counts must be positive")
    if args.nfe_step is None:
        args.nfe_step = TINY_F5["nfe_step"] if args.sizes == "tiny" else 32
    if args.dry_run:
        return dry_run(args)

    import torch

    # The weights are random, not the CC BY-NC ones; the backend checks the variable all the same.
    os.environ["F5TTS_CC_BY_NC_ACCEPTED"] = "1"
    trainer_missing = without_f5_trainer() if "f5tts" in args.systems else []
    on_gpu = args.device.startswith("cuda")
    from importlib.metadata import version

    result = {"device": torch.cuda.get_device_name(0) if on_gpu else f"cpu ({platform.machine()})",
              "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "torch": torch.__version__,
              "f5-tts": version("f5-tts"), "chatterbox-tts": version("chatterbox-tts"), "sizes": args.sizes,
              "f5_trainer_missing": trainer_missing}
    enrollment = voiced_clip(ENROLLMENT_S)
    with tempfile.TemporaryDirectory(prefix="modern-rtf-") as tmp:
        if "f5tts" in args.systems:
            result["f5tts"] = bench_f5tts(args, first_sentences(args.num_sentences), Path(tmp), enrollment)
        if "chatterbox" in args.systems:
            result["chatterbox"] = bench_chatterbox(args, first_sentences(args.chatterbox_sentences), Path(tmp),
                                                    enrollment)

    print(f"\ndevice {result['device']}, torch {result['torch']}, f5-tts {result['f5-tts']}, "
          f"chatterbox-tts {result['chatterbox-tts']}, {result['date_utc']} UTC, {args.sizes} sizes, random weights")
    print("| system | batch | texts | parameters (M) | audio (s) | synthesis (s) | RTF | x batch 1 "
          "| peak GPU memory (GiB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    if "f5tts" in result:
        f5 = result["f5tts"]
        base = f5["runs"][0]["rtf"]
        params = f"{f5['parameters_m']['dit']:.1f} + {f5['parameters_m']['vocos']:.1f}"
        for run in f5["runs"]:
            print(f"| F5-TTS ({f5['dtype'].removeprefix('torch.')}, nfe {args.nfe_step}) | {run['batch_size']} | "
                  f"{run['texts']} | {params} | {run['audio_s']:.1f} | {run['synth_s']:.1f} | {run['rtf']:.4f} | "
                  f"{base / run['rtf']:.2f} | {run['peak_gpu_mem_gb'] or 0:.2f} |")
    if "chatterbox" in result:
        cb = result["chatterbox"]
        params = " + ".join(f"{value:.1f}" for value in cb["parameters_m"].values())
        print(f"| Chatterbox (float32) | 1 | {cb['texts']} | {params} | {cb['audio_s']:.1f} | {cb['synth_s']:.1f} | "
              f"{cb['rtf']:.4f} | | {cb['peak_gpu_mem_gb'] or 0:.2f} |")
        print(f"Chatterbox: {cb['t3_tokens']} T3 tokens ({cb['token_s']:.1f} s of speech tokens; budget "
              f"{cb['token_budget']}), T3 {cb['t3_s']:.1f} s, S3Gen {cb['s3gen_s']:.1f} s, "
              f"watermark ({cb['watermarker']}) {cb['watermark_s']:.1f} s")
    for name in ("f5tts", "chatterbox"):
        if name in result:
            part = result[name]
            print(f"{name}: built in {part['build_s']:.1f} s, loaded in {part['load_s']:.1f} s, conditioning "
                  f"{part['conditioning_s']:.2f} s, warm-up {part['warmup_s']:.1f} s")
    for line in verdict(result):
        print(f"verdict: {line}")
    if args.out_json:
        args.out_json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
