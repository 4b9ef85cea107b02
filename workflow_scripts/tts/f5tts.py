"""Zero-shot TTS with F5-TTS: a flow-matching diffusion transformer over mel frames, Vocos vocoder, 24 kHz.

F5-TTS (Chen et al. 2024, github.com/SWivid/F5-TTS) fills in the mel frames
that follow the reference clip, given the reference clip's transcript followed
by the text to say. So it is conditioned on the enrollment clip AND what the
clip says: the speaker sheet's `enrollment_text`, or else the transcript of the
configured ASR (`workflow_scripts.scoring.asr`), made once by clone_voice and
stored in the voice file with the name of the ASR that wrote it.

The reference is prepared as F5-TTS's `preprocess_ref_audio_text` prepares
it (pydub): a clip longer than 12 s is cut at a pause (an ASR transcript is
made of the clip as cut; a sheet transcript describes the whole clip, which is
then kept whole), its silent edges removed (-42 dBFS, after the clip is
peak-normalised so that the threshold does not depend on the recording level)
and 50 ms of silence appended; the transcript gets F5-TTS's closing ". ".

Synthesis follows `infer_batch_process`: text split into pieces that fit the
22 s F5-TTS generates in one pass (`max_chars` from the reference's characters
per second, at sentence, clause or word boundaries, never truncated), each
piece sampled after the reference with classifier-free guidance, Euler steps
(`nfe_step`, Empirically Pruned Step Sampling where F5-TTS has a schedule) and
sway sampling, vocoded alone by Vocos, and the pieces cross-faded. Pieces of
the texts handed to `synthesize_batch` are sampled together (at most
`max_batch` rows, similar lengths together), as `CFM.sample` samples a batch:
padded, with the mask of each row's length. The difference from `CFM.sample`
is the initial noise: each piece draws it from a CPU generator seeded with its
own seed, so that a piece's noise depends on its text's seed only (F5-TTS draws
a batch's noise from one global stream). A row's audio is still not exactly
the one it has alone: with `attn_mask_enabled` off (as F5TTS_v1_Base is
trained) attention also sees the batch's padding.

Option `model` is a released model (F5TTS_v1_Base, F5TTS_Base: fetched from
SWivid/F5-TTS into the model folder, configured by the package's
configs/<name>.yaml) or a local folder with vocab.txt, one model_*.safetensors
(or .pt) checkpoint and config.yaml in F5-TTS's config format (or a folder named
after a released model, whose packaged config is used). `vocoder` is a hub id
or a local folder of Vocos's config.yaml and pytorch_model.bin. Both load
through F5-TTS's own `load_model` and `load_vocoder`.

The weights are under CC BY-NC 4.0: the backend refuses to start unless
F5TTS_CC_BY_NC_ACCEPTED=1 (config `accept_licenses: [f5tts_cc_by_nc]`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from pathlib import Path

import numpy as np

from workflow_scripts.tts import BACKENDS, HUB_FILES, EnrollmentText, TTSBackend, license_accepted, license_refusal
from workflow_scripts.tts.text import split_text

log = logging.getLogger(__name__)

DEFAULT_MODEL = BACKENDS["f5tts"].default("model")
DEFAULT_VOCODER = BACKENDS["f5tts"].default("vocoder")
SAMPLE_RATE = 24000
N_MELS, HOP_LENGTH = 100, 256  # the mel frames F5-TTS's load_model builds the model for
TARGET_RMS = 0.1  # infer_batch_process: quieter references are raised to this RMS
REFERENCE_CLIP_MS, REFERENCE_KEEP_MS = 12000, 6000  # preprocess_ref_audio_text: cut past 12 s, keep >= 6 s
PASS_S = 22.0  # infer_process: the seconds one pass generates, reference included
MIN_PIECE_CHARS = 40  # a floor for pieces after a long reference
SHEET_SOURCE = "speaker sheet (enrollment_text)"
OPTIONS = ("model", "vocoder", "nfe_step", "cfg_strength", "sway_sampling_coef", "speed", "cross_fade_s",
           "max_batch", "model_dir")


def piece_seed(seed: int, piece_index: int) -> int:
    """The seed of the `piece_index`-th piece of an utterance whose seed is `seed`."""
    return int(np.random.SeedSequence([int(seed), int(piece_index)]).generate_state(1)[0])


def reference_text(text: str) -> str:
    """The transcript as F5-TTS uses it: white space folded, ending in ". " (preprocess_ref_audio_text)."""
    text = " ".join(str(text).split())
    if not text.endswith(". ") and not text.endswith("。"):
        text = text + " " if text.endswith(".") else text + ". "
    return text


def cross_fade(pieces: list[np.ndarray], fade_s: float) -> np.ndarray:
    """The pieces joined with linear cross-fades of `fade_s` seconds (infer_batch_process)."""
    joined = pieces[0]
    for piece in pieces[1:]:
        overlap = min(int(fade_s * SAMPLE_RATE), len(joined), len(piece))
        if overlap <= 0:
            joined = np.concatenate([joined, piece])
            continue
        ramp = np.linspace(0.0, 1.0, overlap)
        mixed = joined[-overlap:] * ramp[::-1] + piece[:overlap] * ramp
        joined = np.concatenate([joined[:-overlap], mixed, piece[overlap:]])
    return np.asarray(joined, dtype=np.float32)


def prepare_reference(audio: np.ndarray, sample_rate: int, cut_long: bool) -> np.ndarray:
    """The reference clip as preprocess_ref_audio_text makes it (see the module docstring)."""
    from f5_tts.infer.utils_infer import remove_silence_edges
    from pydub import AudioSegment, silence

    peak = float(np.max(np.abs(audio)))
    pcm = (np.clip(audio / peak * 0.95, -1.0, 1.0) * 32767.0).astype("<i2")
    aseg = AudioSegment(pcm.tobytes(), frame_rate=sample_rate, sample_width=2, channels=1)
    if cut_long and len(aseg) > REFERENCE_CLIP_MS:
        for min_silence_ms, threshold in ((1000, -50), (100, -40)):  # long pauses first, then short ones
            kept = AudioSegment.silent(duration=0, frame_rate=sample_rate)
            for segment in silence.split_on_silence(aseg, min_silence_len=min_silence_ms, silence_thresh=threshold,
                                                    keep_silence=1000, seek_step=10):
                if len(kept) > REFERENCE_KEEP_MS and len(kept + segment) > REFERENCE_CLIP_MS:
                    break
                kept += segment
            if len(kept) <= REFERENCE_CLIP_MS:
                break
        aseg = kept[:REFERENCE_CLIP_MS]
    aseg = remove_silence_edges(aseg) + AudioSegment.silent(duration=50, frame_rate=sample_rate)
    samples = np.array(aseg.get_array_of_samples(), dtype=np.float32) / 32768.0
    return samples.astype(np.float32)


def find_checkpoint(folder: Path) -> Path:
    found = sorted(folder.glob("model_*.safetensors")) or sorted(folder.glob("model_*.pt"))
    if len(found) != 1:
        what = "no model_*.safetensors or model_*.pt" if not found else f"{len(found)} checkpoints"
        raise FileNotFoundError(f"f5tts backend: {folder}: {what} (expected one F5-TTS checkpoint)")
    return found[0]


def model_config(name: str, folder: Path | None) -> dict:
    """F5-TTS's config of the model: the folder's config.yaml, else the package's configs/<name>.yaml."""
    import yaml
    from importlib.resources import files

    path = folder / "config.yaml" if folder is not None else None
    if path is None or not path.is_file():
        packaged = Path(str(files("f5_tts").joinpath(f"configs/{name}.yaml")))
        if not packaged.is_file():
            raise FileNotFoundError(f"f5tts backend: {folder}: no config.yaml, and {name!r} is not a model whose "
                                    "config F5-TTS ships (configs/<name>.yaml)")
        path = packaged
    config = yaml.safe_load(path.read_text(encoding="utf-8"))["model"]
    mel = config.get("mel_spec", {})
    expected = {"target_sample_rate": SAMPLE_RATE, "n_mel_channels": N_MELS, "hop_length": HOP_LENGTH,
                "mel_spec_type": "vocos"}
    wrong = {key: mel.get(key) for key, value in expected.items() if mel.get(key) != value}
    if wrong:
        raise ValueError(f"f5tts backend: {path}: mel_spec {wrong}; this backend runs F5-TTS's Vocos models "
                         f"({expected})")
    return config


def model_files(model: str, model_dir: str) -> tuple[dict, Path, Path]:
    """(F5-TTS model config, checkpoint, vocab.txt) of `model`: a local folder or a released model."""
    from workflow_scripts.runtime import model_cache
    from workflow_scripts.tts.hub import hub_files

    if model_cache.is_local(model):
        folder = Path(model).expanduser()
        if not (folder / "vocab.txt").is_file():
            raise FileNotFoundError(f"f5tts backend: {folder}: no vocab.txt in the model folder")
        return model_config(folder.name, folder), find_checkpoint(folder), folder / "vocab.txt"
    released = HUB_FILES["f5tts"]
    if model not in released:
        raise ValueError(f"f5tts backend: model {model!r} is neither an existing folder nor a released model "
                         f"({', '.join(released)})")
    repo, filenames = released[model]
    checkpoint, vocab = hub_files("f5tts", repo, filenames, model_dir)
    return model_config(model, None), checkpoint, vocab


def vocoder_folder(vocoder: str, model_dir: str) -> Path:
    from workflow_scripts.runtime import model_cache
    from workflow_scripts.tts.hub import hub_files

    if model_cache.is_local(vocoder):
        folder = Path(vocoder).expanduser()
        missing = [f for f in ("config.yaml", "pytorch_model.bin") if not (folder / f).is_file()]
        if missing:
            raise FileNotFoundError(f"f5tts backend: {folder}: no {' or '.join(missing)} in the Vocos folder")
        return folder
    if len(vocoder.split("/")) != 2:
        raise ValueError(f"f5tts backend: vocoder {vocoder!r} is neither an existing folder nor a hub id")
    return hub_files("f5tts", vocoder, ["config.yaml", "pytorch_model.bin"], model_dir)[0].parent


class F5TTSBackend(TTSBackend):
    """F5-TTS conditioned on the enrollment clip and its transcript (see the module docstring).

    Options: model, vocoder (released names, hub ids or local folders), nfe_step (32), cfg_strength
    (2.0), sway_sampling_coef (-1.0), speed (1.0), cross_fade_s (0.15): F5-TTS's defaults;
    max_batch (8): most pieces sampled at once; model_dir (the model cache root).
    """

    name = "f5tts"
    sample_rate = SAMPLE_RATE

    def __init__(self, device: str = "cpu", model: str = DEFAULT_MODEL, vocoder: str = DEFAULT_VOCODER,
                 nfe_step: int = 32, cfg_strength: float = 2.0, sway_sampling_coef: float | None = -1.0,
                 speed: float = 1.0, cross_fade_s: float = 0.15, max_batch: int = 8, model_dir: str = "models",
                 **options) -> None:
        if not license_accepted("f5tts_cc_by_nc"):
            raise PermissionError(license_refusal(self.name, "f5tts_cc_by_nc", "the F5-TTS weights"))
        if options:
            raise TypeError(f"f5tts backend: unknown options {sorted(options)}; it takes {', '.join(OPTIONS)}")
        for option, value in (("nfe_step", nfe_step), ("max_batch", max_batch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"f5tts backend: {option} must be a positive integer, got {value!r}")
        if speed <= 0 or cross_fade_s < 0 or cfg_strength < 0:
            raise ValueError(f"f5tts backend: need speed > 0, cross_fade_s >= 0 and cfg_strength >= 0, got "
                             f"{speed}, {cross_fade_s}, {cfg_strength}")
        super().__init__(device=device, model=model, vocoder=vocoder, nfe_step=nfe_step, cfg_strength=cfg_strength,
                         sway_sampling_coef=sway_sampling_coef, speed=speed, cross_fade_s=cross_fade_s,
                         max_batch=max_batch)
        self.model_name, self.vocoder_name, self.model_dir = model, vocoder, model_dir
        self.nfe_step, self.cfg_strength, self.sway = nfe_step, float(cfg_strength), sway_sampling_coef
        self.speed, self.cross_fade_s, self.max_batch = float(speed), float(cross_fade_s), max_batch

    # models are loaded when first needed: cloning needs neither (only the ASR, when there is no transcript)
    @functools.cached_property
    def model(self):
        import f5_tts.model
        from f5_tts.infer.utils_infer import load_model

        config, checkpoint, vocab = model_files(self.model_name, self.model_dir)
        backbone = getattr(f5_tts.model, config["backbone"])
        with contextlib.redirect_stdout(sys.stderr):  # F5-TTS prints what it loads: into the job's log
            model = load_model(backbone, config["arch"], str(checkpoint), mel_spec_type="vocos",
                               vocab_file=str(vocab), device=self.device)
        log.info("f5tts: %s (%s, %s) on %s, %s", self.model_name, checkpoint, config["backbone"], self.device,
                 next(model.parameters()).dtype)
        return model.eval()

    @functools.cached_property
    def vocoder(self):
        from f5_tts.infer.utils_infer import load_vocoder

        folder = vocoder_folder(self.vocoder_name, self.model_dir)
        with contextlib.redirect_stdout(sys.stderr):
            return load_vocoder("vocos", is_local=True, local_path=str(folder), device=self.device)

    def compute_conditioning(self, enrollment: np.ndarray, sample_rate: int,
                             enrollment_text: EnrollmentText | None = None) -> dict:
        """The prepared reference clip and its transcript, with where the transcript came from."""
        if enrollment_text is None:
            raise ValueError("f5tts backend: conditioning needs the enrollment clip's transcript "
                             "(enrollment_text: the speaker sheet's text or the ASR to use)")
        if enrollment_text.problem():
            raise ValueError(f"f5tts backend: {enrollment_text.problem()}")
        audio = np.asarray(enrollment, dtype=np.float32).reshape(-1)
        given = " ".join(enrollment_text.text.split())
        reference = prepare_reference(audio, sample_rate, cut_long=not given)
        duration_s = reference.size / sample_rate
        if reference.size < sample_rate // 2:
            raise ValueError(f"f5tts backend: the enrollment clip has {duration_s:.2f} s above -42 dBFS of its "
                             "peak after its silent edges are cut; a reference needs speech")
        note = ""
        if given:
            text, source = given, SHEET_SOURCE
            if duration_s * 1000 > REFERENCE_CLIP_MS:
                log.warning("f5tts: the reference is %.1f s long (F5-TTS cuts at %d s, but the transcript from "
                            "the speaker sheet describes the whole clip): less room for text per pass",
                            duration_s, REFERENCE_CLIP_MS // 1000)
        else:
            text, source, note = self.transcribe(reference, sample_rate, enrollment_text)
        log.info("f5tts: reference %.2f s, transcript from %s: %r", duration_s, source, text)
        return {"reference_audio": reference, "reference_sample_rate": int(sample_rate),
                "reference_text": reference_text(text), "reference_text_source": source, "asr_note": note}

    def transcribe(self, reference: np.ndarray, sample_rate: int, enrollment_text: EnrollmentText):
        """(text, ASR name, ASR note) of the prepared reference clip, by the configured ASR."""
        from workflow_scripts.files.audio import SAMPLE_RATE as ASR_RATE
        from workflow_scripts.files.audio import resample
        from workflow_scripts.scoring.asr import load_asr

        asr = load_asr(enrollment_text.asr, self.model_dir, enrollment_text.whisper_model, device=self.device)
        text = " ".join(asr.transcribe_batch([resample(reference, sample_rate, ASR_RATE)])[0].split())
        if not text:
            raise ValueError(f"f5tts backend: the ASR {asr.name} heard no words in the enrollment clip; give its "
                             "transcript in the speaker sheet's enrollment_text column")
        return text, asr.name, getattr(asr, "note", "")

    def _reference(self, conditioning: dict):
        """(mel (1, frames, mels), its frames, its RMS, its transcript, its seconds) for the model."""
        import torch
        import torchaudio

        missing = [k for k in ("reference_audio", "reference_sample_rate", "reference_text") if k not in conditioning]
        if missing:
            raise ValueError(f"f5tts backend: conditioning has no {', '.join(missing)} (was it made by another backend?)")
        audio = torch.as_tensor(np.asarray(conditioning["reference_audio"], dtype=np.float32)).reshape(1, -1)
        sample_rate = int(conditioning["reference_sample_rate"])
        duration_s = audio.shape[-1] / sample_rate
        rms = float(torch.sqrt(torch.mean(torch.square(audio))))
        if rms < TARGET_RMS:
            audio = audio * TARGET_RMS / rms
        if sample_rate != SAMPLE_RATE:
            audio = torchaudio.transforms.Resample(sample_rate, SAMPLE_RATE)(audio)
        text = conditioning["reference_text"]
        if len(text[-1].encode("utf-8")) == 1:
            text = text + " "
        with torch.inference_mode():
            mel = self.model.mel_spec(audio.to(self.device)).permute(0, 2, 1)
        return mel, audio.shape[-1] // HOP_LENGTH, rms, text, duration_s

    def split(self, text: str, ref_text: str, ref_s: float) -> list[str]:
        """`text` in pieces that fit one pass after the reference (infer_process's max_chars)."""
        text = " ".join(str(text).split())
        if not text:
            raise ValueError("f5tts backend: empty text")
        max_chars = int(len(ref_text.encode("utf-8")) / ref_s * (PASS_S - ref_s) * self.speed)
        return split_text(text, max(max_chars, MIN_PIECE_CHARS))

    def synthesize(self, text: str, conditioning: dict, seed: int) -> np.ndarray:
        return self.synthesize_batch([text], conditioning, [seed])[0]

    def synthesize_batch(self, texts: list[str], conditioning: dict, seeds: list[int]) -> list[np.ndarray]:
        """Every text's pieces sampled together (at most max_batch at once), vocoded, cross-faded."""
        if len(texts) != len(seeds):
            raise ValueError(f"f5tts backend: {len(texts)} texts but {len(seeds)} seeds")
        mel, ref_frames, rms, ref_text, ref_s = self._reference(conditioning)
        rows = []  # (text index, piece, frames to generate after the reference, seed)
        ref_bytes = len(ref_text.encode("utf-8"))
        for index, (text, seed) in enumerate(zip(texts, seeds)):
            for piece_index, piece in enumerate(self.split(text, ref_text, ref_s)):
                piece_bytes = len(piece.encode("utf-8"))
                speed = 0.3 if piece_bytes < 10 else self.speed  # infer_batch_process's short-text rule
                frames = int(ref_frames / ref_bytes * piece_bytes / speed)
                rows.append((index, piece, frames, piece_seed(seed, piece_index)))
        order = sorted(range(len(rows)), key=lambda r: rows[r][2])
        waves: dict[int, np.ndarray] = {}
        for start in range(0, len(order), self.max_batch):
            group = order[start:start + self.max_batch]
            mels = self.sample(mel, ref_frames, [ref_text + rows[r][1] for r in group],
                               [ref_frames + rows[r][2] for r in group], [rows[r][3] for r in group])
            for r, generated in zip(group, mels):
                waves[r] = self.vocode(generated, rms)
        return [cross_fade([waves[r] for r in range(len(rows)) if rows[r][0] == index], self.cross_fade_s)
                for index in range(len(texts))]

    def sample(self, ref_mel, ref_frames: int, texts: list[str], durations: list[int], seeds: list[int]) -> list:
        """CFM.sample of the rows after the same reference, each row's noise from its own seed; the
        generated frames of each row, (frames, mels), cut after the reference's `ref_frames` as
        infer_batch_process cuts them."""
        import torch
        from f5_tts.model.utils import convert_char_to_pinyin, get_epss_timesteps, lens_to_mask, list_str_to_idx
        from torch.nn.utils.rnn import pad_sequence
        from torchdiffeq import odeint

        model = self.model
        rows, device = len(texts), self.device
        dtype = next(model.parameters()).dtype
        text = list_str_to_idx(convert_char_to_pinyin(texts), model.vocab_char_map).to(device)
        cond_frames = ref_mel.shape[1]  # the mel has a frame more than the audio's whole hops (centred STFT)
        lens = torch.full((rows,), cond_frames, device=device, dtype=torch.long)
        duration = torch.tensor(durations, device=device, dtype=torch.long)
        duration = torch.maximum(torch.maximum((text != -1).sum(dim=-1), lens) + 1, duration).clamp(max=65536)
        longest = int(duration.amax())
        cond = torch.nn.functional.pad(ref_mel.to(dtype).expand(rows, -1, -1), (0, 0, 0, longest - cond_frames))
        cond_mask = torch.nn.functional.pad(lens_to_mask(lens), (0, longest - cond_frames), value=False).unsqueeze(-1)
        step_cond = torch.where(cond_mask, cond, torch.zeros_like(cond))
        mask = lens_to_mask(duration) if rows > 1 else None

        def flow(t, x):
            if self.cfg_strength < 1e-5:
                return model.transformer(x=x, cond=step_cond, text=text, time=t, mask=mask, drop_audio_cond=False,
                                         drop_text=False, cache=True)
            both = model.transformer(x=x, cond=step_cond, text=text, time=t, mask=mask, cfg_infer=True, cache=True)
            pred, null_pred = torch.chunk(both, 2, dim=0)
            return pred + (pred - null_pred) * self.cfg_strength

        noise = [torch.randn(int(d), model.num_channels, generator=torch.Generator().manual_seed(int(s)))
                 for d, s in zip(duration.tolist(), seeds)]  # on the CPU: the same noise on every device
        y0 = pad_sequence(noise, batch_first=True).to(device=device, dtype=dtype)
        t = get_epss_timesteps(self.nfe_step, device=device, dtype=dtype)
        if self.sway is not None:
            t = t + self.sway * (torch.cos(torch.pi / 2 * t) - 1 + t)
        with torch.inference_mode():
            try:
                out = odeint(flow, y0, t, **model.odeint_kwargs)[-1]
            finally:
                model.transformer.clear_cache()
            out = torch.where(cond_mask, cond, out)
        return [out[row, ref_frames:int(duration[row])] for row in range(rows)]

    def vocode(self, generated, rms: float) -> np.ndarray:
        """Vocos on one row's frames alone; quieter references give quieter speech, as in F5-TTS."""
        import torch

        with torch.inference_mode():
            wave = self.vocoder.decode(generated.float().unsqueeze(0).permute(0, 2, 1))
        if rms < TARGET_RMS:
            wave = wave * rms / TARGET_RMS
        return wave.squeeze().float().cpu().numpy().astype(np.float32).reshape(-1)
