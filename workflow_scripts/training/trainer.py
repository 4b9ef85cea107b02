"""Training library shared by the pretrain and finetune steps.

Data: a speech folder (manifest.csv, format 2) and a noise folder
(noises.csv, format 3). Training examples are drawn on the fly: a random crop
of a random training utterance mixed with a random noise of the set at a
random offset and a random SNR. The signals are held in memory, or read crop
by crop from disk (`AudioFiles`, for pools larger than memory): the same seed
gives the same crops either way. Validation is a fixed, seeded set of
full-length mixtures, scored by mean SDR (the challenge's metric) or by mean
SI-SDR improvement over the mixture (`val_metric: si_sdri`).

The loop (Adam, negative-SDR loss, early stopping on the validation score)
keeps the best state; the validation score of the initial model is the first
history row (step 0), so the best state can be the initial one.

Resume: with a resume file, the loop writes its whole state (model,
optimiser, early-stopping state, loss history, step, and the random states
of torch, numpy, Python and the crop sampler) every `resume_every` steps,
atomically, and on SIGTERM (a scheduler's time limit or preemption) at the
end of the step under way. A run started again with the same resume file
continues from there and ends exactly as an uninterrupted run would on the
same device and thread count (bit-identical on CPU). A resume file written
for another recipe, initial model or data is ignored.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import random
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd
import soundfile as sf
import torch
from tqdm import tqdm

from workflow_scripts.runtime import gpu
from workflow_scripts.files.audio import (
    SAMPLE_RATE,
    AudioError,
    atomic_path,
    atomic_write_text,
    fit_length,
    power,
    read_audio,
    scale_to_snr,
)
from workflow_scripts.files.folders import DataError, read_noise_table, read_speech_folder
from workflow_scripts.model.convtasnet import ConvTasNet, save_checkpoint
from workflow_scripts.model.enhance import enhance
from workflow_scripts.scoring.metrics import neg_sdr_loss, sdr_db, si_sdr_db

log = logging.getLogger(__name__)

VAL_SNRS_DB = (-2.5, 0.0, 2.5)  # validation mixtures cycle through these
PEAK = 0.9  # peak level of a peak-normalised mixture
GRAD_CLIP_NORM = 5.0
MAX_DRAWS = 20  # redraws of a silent crop before giving up
RESUME_EVERY = 25  # steps between resume checkpoints
RESUME_FORMAT = 1
# validation metric -> (history column, name in logs and plots)
VAL_METRICS = {"sdr": ("val_sdr_db", "validation SDR"), "si_sdri": ("val_si_sdri_db", "validation SI-SDRi")}


@dataclass(frozen=True)
class Recipe:
    batch_size: int = 8
    crop_seconds: float = 2.0
    lr: float = 1e-3
    snr_low_db: float = -5.0
    snr_high_db: float = 5.0
    max_steps: int = 1000
    val_every: int = 50
    patience: int = 5
    seed: int = 0
    peak_normalize: bool = False
    val_metric: str = "sdr"  # a key of VAL_METRICS: picks the best step and stops early


# ---- folders ------------------------------------------------------------------


def nested_subsets(manifest: pd.DataFrame, num_train: int, num_val: int, folder="speech folder"):
    """(validation rows, training rows): the first `num_val` rows, then the next `num_train`."""
    if num_train < 1 or num_val < 1:
        raise DataError(f"num_train and num_val must be >= 1 (got {num_train}, {num_val})")
    if len(manifest) < num_train + num_val:
        raise DataError(
            f"{folder}: {len(manifest)} utterances, fewer than num_val + num_train = "
            f"{num_val} + {num_train} = {num_val + num_train}"
        )
    val_rows = manifest.iloc[:num_val].reset_index(drop=True)
    train_rows = manifest.iloc[num_val : num_val + num_train].reset_index(drop=True)
    return val_rows, train_rows


def load_utterances(rows: pd.DataFrame) -> list[np.ndarray]:
    utterances = [read_audio(wav) for wav in rows["wav"]]
    for wav, audio in zip(rows["wav"], utterances):
        if power(audio) == 0.0:
            raise AudioError(f"{wav}: speech is silent")
    return utterances


def load_noises(folder: str | Path) -> tuple[list[str], list[np.ndarray]]:
    table = read_noise_table(folder)
    noises = [read_audio(wav) for wav in table["wav"]]
    for wav, audio in zip(table["wav"], noises):
        if power(audio) == 0.0:
            raise AudioError(f"{wav}: noise is silent")
    return [str(n) for n in table["noise_id"]], noises


# ---- audio on disk ------------------------------------------------------------


def _audio_header(path: str) -> tuple[int, tuple[int, int]]:
    """(frames, file size and time stamp) of a 16 kHz file, or AudioError naming it."""
    try:
        info = sf.info(path)
    except Exception as exc:  # soundfile raises several types
        raise AudioError(f"{path}: cannot read audio header ({exc})") from exc
    if info.samplerate != SAMPLE_RATE:
        raise AudioError(
            f"{path}: {info.samplerate} Hz; crops are read from disk as they are, so files must be"
            f" {SAMPLE_RATE} Hz (prepare_pretrain_pool converts others)"
        )
    if info.frames <= 0:
        raise AudioError(f"{path}: audio file is empty (0 samples)")
    stat = Path(path).stat()
    return info.frames, (stat.st_size, stat.st_mtime_ns)


class AudioFiles:
    """Signals left on disk: lengths from the file headers, read once; samples read by range.

    A range is the very samples `read_audio` gives for that range (channels
    averaged), so crops from disk equal crops from memory. 16 kHz files only.
    """

    def __init__(self, paths, what: str = "audio", threads: int = 1):
        self.paths = [str(p) for p in paths]
        progress = {"total": len(self.paths), "desc": f"{what} headers", "unit": "file", "mininterval": 5.0}
        if threads > 1:
            with ThreadPoolExecutor(threads) as pool:
                headers = list(tqdm(pool.map(_audio_header, self.paths, chunksize=256), **progress))
        else:
            headers = [_audio_header(p) for p in tqdm(self.paths, **progress)]
        self.lengths = np.array([frames for frames, _ in headers], dtype=np.int64)
        self._stamps = [stamp for _, stamp in headers]

    def __len__(self) -> int:
        return len(self.paths)

    def length(self, i: int) -> int:
        return int(self.lengths[i])

    def read(self, i: int, start: int, frames: int) -> np.ndarray:
        path = self.paths[i]
        try:
            audio, _ = sf.read(path, start=start, frames=frames, dtype="float32", always_2d=True)
        except Exception as exc:  # soundfile raises several types
            raise AudioError(f"{path}: cannot read samples {start}-{start + frames} ({exc})") from exc
        if audio.shape[0] != frames:
            raise AudioError(
                f"{path}: {audio.shape[0]} of samples {start}-{start + frames} read (file changed?)"
            )
        audio = audio.mean(axis=1)
        if not np.all(np.isfinite(audio)):
            raise AudioError(f"{path}: audio contains NaN or Inf samples")
        return audio

    def fingerprint(self) -> bytes:
        """What identifies the files: paths, lengths, sizes and time stamps."""
        return json.dumps([self.paths, self.lengths.tolist(), self._stamps]).encode()

    @property
    def hours(self) -> float:
        return float(self.lengths.sum()) / SAMPLE_RATE / 3600


class AudioArrays:
    """Signals in memory, with AudioFiles' interface."""

    def __init__(self, signals):
        self.signals = list(signals)

    def __len__(self) -> int:
        return len(self.signals)

    def length(self, i: int) -> int:
        return int(self.signals[i].size)

    def read(self, i: int, start: int, frames: int) -> np.ndarray:
        return self.signals[i][start : start + frames]


def audio_source(signals) -> AudioFiles | AudioArrays:
    """AudioFiles as they are; a list of signals wrapped in AudioArrays."""
    return signals if isinstance(signals, AudioFiles | AudioArrays) else AudioArrays(signals)


def read_tiled(source, i: int, offset: int, num_samples: int) -> np.ndarray:
    """`fit_length` of signal i (tiled from `offset`), reading only the samples it needs."""
    size = source.length(i)
    if size < num_samples:
        return fit_length(source.read(i, 0, size), num_samples, offset)
    head = source.read(i, offset, min(num_samples, size - offset))
    if head.size == num_samples:
        return head
    return np.concatenate([head, source.read(i, 0, num_samples - head.size)])


# ---- mixtures -----------------------------------------------------------------


def random_crop(utterance: np.ndarray, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """A random `num_samples` window; shorter utterances are zero-padded at the end."""
    if utterance.size >= num_samples:
        start = int(rng.integers(0, utterance.size - num_samples + 1))
        return utterance[start : start + num_samples]
    return np.pad(utterance, (0, num_samples - utterance.size))


class CropMixer:
    """Draws training examples: (mixture, clean, snr_db).

    `utterances` and `noises` are lists of signals or AudioFiles (crops read
    from disk). A draw is a random utterance and a random crop of it (see
    `random_crop`), a random noise tiled from a random offset, and an SNR
    uniform in the recipe's range; a draw whose speech or noise crop is silent
    is redrawn. With `read_threads` > 1 the examples of a batch are read and
    mixed in parallel; the draws, and so the batches, stay the same.
    """

    def __init__(
        self, utterances, noises, recipe: Recipe, sample_rate: int = SAMPLE_RATE, read_threads: int = 1
    ):
        if not len(utterances) or not len(noises):
            raise DataError("need at least one training utterance and one noise")
        self.utterances = utterances
        self.noises = noises
        self.recipe = recipe
        self.crop_samples = round(recipe.crop_seconds * sample_rate)
        self._speech, self._noise = audio_source(utterances), audio_source(noises)
        self._pool = ThreadPoolExecutor(read_threads) if read_threads > 1 else None

    def _draw(self, rng: np.random.Generator) -> tuple[int, int, int, int, float]:
        """(utterance, crop start, noise, noise offset, snr_db), in random_crop's order of draws."""
        n = self.crop_samples
        utterance = int(rng.integers(len(self._speech)))
        size = self._speech.length(utterance)
        start = int(rng.integers(0, size - n + 1)) if size >= n else 0
        noise = int(rng.integers(len(self._noise)))
        offset = int(rng.integers(self._noise.length(noise)))
        snr_db = float(rng.uniform(self.recipe.snr_low_db, self.recipe.snr_high_db))
        return utterance, start, noise, offset, snr_db

    def _example(self, draw) -> tuple[np.ndarray, np.ndarray] | None:
        """(mixture, clean) of a draw, or None when its speech or noise crop is silent."""
        utterance, start, noise_index, offset, snr_db = draw
        n = self.crop_samples
        size = self._speech.length(utterance)
        clean = self._speech.read(utterance, start, min(n, size))
        clean = clean if size >= n else np.pad(clean, (0, n - size))
        noise = read_tiled(self._noise, noise_index, offset, n)
        if power(clean) == 0.0 or power(noise) == 0.0:
            return None
        mixture = clean + scale_to_snr(clean, noise, snr_db)
        if self.recipe.peak_normalize:
            gain = PEAK / max(float(np.max(np.abs(mixture))), 1e-8)
            mixture, clean = mixture * gain, clean * gain
        return mixture.astype(np.float32), clean.astype(np.float32)

    def example(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
        mixtures, cleans, snrs_db = self.batch(rng, 1)
        return mixtures[0], cleans[0], float(snrs_db[0])

    def batch(self, rng: np.random.Generator, batch_size: int):
        """(mixtures, cleans, snrs_db) of `batch_size` examples.

        Draws come one after another from `rng` and each is kept or, when
        silent, redrawn; as many draws as examples still missing are read at
        once, so the draws are those of drawing example by example."""
        examples, silent_draws = [], 0
        while len(examples) < batch_size:
            draws = [self._draw(rng) for _ in range(batch_size - len(examples))]
            made = self._pool.map(self._example, draws) if self._pool else map(self._example, draws)
            for example, draw in zip(made, draws):
                if example is not None:
                    examples.append((*example, draw[-1]))
                    silent_draws = 0
                    continue
                silent_draws += 1
                if silent_draws == MAX_DRAWS:
                    raise DataError(f"{MAX_DRAWS} draws in a row gave a silent speech or noise crop")
        mixtures = np.stack([e[0] for e in examples])
        cleans = np.stack([e[1] for e in examples])
        return mixtures, cleans, np.array([e[2] for e in examples])


def validation_set(utterances, noises, seed: int, peak_normalize: bool = False):
    """Full-length mixtures: utterance i with noise i % n_noises at VAL_SNRS_DB[i % 3],
    the noise starting at a seeded offset. `noises`: a list of signals or AudioFiles.
    Returns a list of (mixture, clean)."""
    rng = np.random.default_rng([seed, 1])
    noises = audio_source(noises)
    pairs = []
    for i, clean in enumerate(utterances):
        k = i % len(noises)
        offset = int(rng.integers(noises.length(k)))
        noise = read_tiled(noises, k, offset, clean.size)
        mixture = (clean + scale_to_snr(clean, noise, VAL_SNRS_DB[i % len(VAL_SNRS_DB)])).astype(np.float32)
        if peak_normalize:
            gain = PEAK / max(float(np.max(np.abs(mixture))), 1e-8)
            mixture, clean = mixture * gain, clean * gain
        pairs.append((mixture.astype(np.float32), clean.astype(np.float32)))
    return pairs


# ---- training -----------------------------------------------------------------


def resolve_device(name: str, whole_gpu: bool = False) -> torch.device:
    """The device for `--device`: "auto" is a GPU claimed for this job (see gpu.py; with
    `whole_gpu` every slot of one GPU), else the CPU."""
    return torch.device(gpu.resolve_device(name, whole_gpu))


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def mean_validation_sdr(model: ConvTasNet, val_pairs, device: torch.device) -> float:
    was_training = model.training
    model.eval()
    scores = [sdr_db(clean, enhance(model, mixture, device)) for mixture, clean in val_pairs]
    model.train(was_training)
    return float(np.mean(scores))


def mean_validation_si_sdri(
    model: ConvTasNet, val_pairs, device: torch.device, mixture_si_sdrs_db=None
) -> float:
    """Mean over the pairs of SI-SDR of the enhanced mixture minus SI-SDR of the mixture
    (`mixture_si_sdrs_db`: the latter, when already known)."""
    if mixture_si_sdrs_db is None:
        mixture_si_sdrs_db = [si_sdr_db(clean, mixture) for mixture, clean in val_pairs]
    was_training = model.training
    model.eval()
    scores = [
        si_sdr_db(clean, enhance(model, mixture, device)) - mixture_db
        for (mixture, clean), mixture_db in zip(val_pairs, mixture_si_sdrs_db, strict=True)
    ]
    model.train(was_training)
    return float(np.mean(scores))


def validation_scorer(val_pairs, val_metric: str, device: torch.device):
    """model -> its mean validation score of `val_metric` (a key of VAL_METRICS)."""
    if val_metric == "sdr":
        return lambda model: mean_validation_sdr(model, val_pairs, device)
    if val_metric == "si_sdri":
        mixture_si_sdrs_db = [si_sdr_db(clean, mixture) for mixture, clean in val_pairs]
        return lambda model: mean_validation_si_sdri(model, val_pairs, device, mixture_si_sdrs_db)
    raise ValueError(f"unknown validation metric {val_metric!r} (one of {', '.join(VAL_METRICS)})")


@dataclass
class TrainResult:
    history: list[dict]
    best_state: dict
    best_step: int
    best_val_db: float  # the best validation score, of `val_metric`
    val_metric: str = "sdr"

    @property
    def val_column(self) -> str:
        """The history's column of validation scores (val_sdr_db, val_si_sdri_db)."""
        return VAL_METRICS[self.val_metric][0]

    @property
    def best_val_sdr_db(self) -> float:
        if self.val_metric != "sdr":
            raise AttributeError(f"validated on {self.val_metric}, not SDR: see best_val_db")
        return self.best_val_db


@dataclass
class LoopState:
    """Where the training loop stands after `step` steps."""

    step: int
    history: list[dict]
    best_val: float
    best_state: dict  # on the CPU
    best_step: int = 0
    stale: int = 0  # evaluations without improvement
    losses: list[float] = field(default_factory=list)  # since the last evaluation


def cpu_state(model: torch.nn.Module) -> dict:
    return {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}


class BatchStream:
    """The mixer's training batches in order, and the crop sampler's state
    after the last batch handed out (what a resume file keeps). With
    `prefetch`, the next batch is drawn in a background thread while the
    current step runs: the same batches, sooner."""

    def __init__(self, mixer: CropMixer, rng: np.random.Generator, batch_size: int, prefetch: bool = False):
        self.mixer, self.rng, self.batch_size = mixer, rng, batch_size
        self.state = rng.bit_generator.state
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="batches") if prefetch else None
        self._next = self._thread.submit(self._draw) if prefetch else None

    def _draw(self):
        mixtures, cleans, _ = self.mixer.batch(self.rng, self.batch_size)
        return mixtures, cleans, self.rng.bit_generator.state

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        if self._thread is None:
            mixtures, cleans, self.state = self._draw()
        else:
            mixtures, cleans, self.state = self._next.result()
            self._next = self._thread.submit(self._draw)
        return mixtures, cleans

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._next.cancel()
            self._thread.shutdown(wait=True)


# ---- resume files ---------------------------------------------------------------


def run_fingerprint(settings, model: torch.nn.Module, signal_groups) -> str:
    """A hash of what a run depends on: its settings (JSON), the initial model's
    weights and each group of audio in order (arrays, or AudioFiles by their own
    fingerprint); a resume file is used only by a run of the same hash."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    for signals in signal_groups:
        if isinstance(signals, AudioFiles):
            digest.update(signals.fingerprint())
            continue
        digest.update(str(len(signals)).encode())
        for audio in signals:
            digest.update(np.ascontiguousarray(audio).tobytes())
    return digest.hexdigest()


def training_fingerprint(model: ConvTasNet, mixer: CropMixer, val_pairs, recipe: Recipe) -> str:
    """run_fingerprint of recipe, initial model, training and validation audio."""
    validation = [a for pair in val_pairs for a in pair]
    return run_fingerprint(asdict(recipe), model, (mixer.utterances, mixer.noises, validation))


def random_states(crop_sampler_state: dict, device: torch.device) -> dict:
    states = {
        "crop_sampler": crop_sampler_state,
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if device.type == "cuda":
        states["torch_cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: dict, rng: np.random.Generator, device: torch.device) -> None:
    rng.bit_generator.state = states["crop_sampler"]
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if device.type == "cuda" and "torch_cuda" in states:
        torch.cuda.set_rng_state_all(states["torch_cuda"])


def save_resume(
    path: Path, fingerprint: str, loop: LoopState, model, optimizer, crop_sampler_state, device
) -> None:
    """The loop's whole state, written under a temporary name and renamed."""
    state = {
        "format": RESUME_FORMAT,
        "fingerprint": fingerprint,
        "loop": asdict(loop),
        "model": cpu_state(model),
        "optimizer": optimizer.state_dict(),
        "random": random_states(crop_sampler_state, device),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    log.info("step %d: resume file %s written", loop.step, path)


def load_resume(path: Path, fingerprint: str) -> dict | None:
    """The saved state when `path` holds one for this very run, else None (and why, logged)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - a resume file is an optimisation: never fail on it
        log.warning("%s: unreadable resume file (%s); starting from step 0", path, exc)
        return None
    if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
        log.warning("%s: not a resume file of this version; starting from step 0", path)
        return None
    if state.get("fingerprint") != fingerprint:
        log.warning("%s: resume file of another recipe, initial model or data; starting from step 0", path)
        return None
    return state


def remove_resume(path: str | Path | None) -> None:
    """Delete the resume file once the final outputs are written."""
    if path is not None and Path(path).exists():
        Path(path).unlink()
        log.info("removed resume file %s", path)


class StopRequest:
    """SIGTERM during training: finish the step, write the resume file, then stop."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


# ---- the loop ---------------------------------------------------------------------


def train(
    model: ConvTasNet,
    mixer: CropMixer,
    val_pairs,
    recipe: Recipe,
    device: torch.device,
    resume_file: str | Path | None = None,
    resume_every: int = RESUME_EVERY,
    prefetch: bool = False,
) -> TrainResult:
    """Adam on negative SDR with early stopping on the mean validation score
    (`recipe.val_metric`).

    With `resume_file`, continues from it when it holds a state of this run,
    and writes one every `resume_every` steps and on SIGTERM. With `prefetch`,
    each batch is drawn while the step before it runs (see BatchStream).
    """
    seed_everything(recipe.seed)
    rng = np.random.default_rng([recipe.seed, 0])
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    column, label = VAL_METRICS[recipe.val_metric]
    validate = validation_scorer(val_pairs, recipe.val_metric, device)

    resume_file = Path(resume_file) if resume_file is not None else None
    fingerprint = training_fingerprint(model, mixer, val_pairs, recipe) if resume_file else ""
    saved = load_resume(resume_file, fingerprint) if resume_file else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        restore_random_states(saved["random"], rng, device)
        loop = LoopState(**saved["loop"])
        log.info("resumed from %s at step %d", resume_file, loop.step)
    else:
        val = validate(model)
        history = [{"step": 0, "train_loss": math.nan, column: val, "best": True}]
        loop = LoopState(step=0, history=history, best_val=val, best_state=cpu_state(model))
        log.info("step 0: %s %.3f dB (initial model)", label, val)

    progress = tqdm(
        range(loop.step + 1, recipe.max_steps + 1),
        desc="train",
        unit="step",
        mininterval=5.0,
        initial=loop.step,
        total=recipe.max_steps,
    )
    with StopRequest() as stop, BatchStream(mixer, rng, recipe.batch_size, prefetch) as batches:
        for step in progress:
            mixtures, cleans = batches.next()
            estimate = model(torch.from_numpy(mixtures).to(device))
            loss = neg_sdr_loss(estimate, torch.from_numpy(cleans).to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
            optimizer.step()
            loop.step = step
            loop.losses.append(loss.item())
            if not math.isfinite(loop.losses[-1]):
                raise FloatingPointError(f"training diverged at step {step}: loss {loop.losses[-1]}")
            evaluation_step = step % recipe.val_every == 0 or step == recipe.max_steps
            if evaluation_step and evaluate_and_check_stop(model, validate, loop, recipe, progress):
                break
            if resume_file and step < recipe.max_steps and (step % resume_every == 0 or stop.requested):
                save_resume(resume_file, fingerprint, loop, model, optimizer, batches.state, device)
            if stop.requested and step < recipe.max_steps:
                log.warning(
                    "SIGTERM: stopped after step %d%s",
                    step,
                    f"; run again to continue from {resume_file}" if resume_file else "",
                )
                raise SystemExit(128 + signal.SIGTERM)
    progress.close()
    return TrainResult(loop.history, loop.best_state, loop.best_step, loop.best_val, recipe.val_metric)


def evaluate_and_check_stop(model, validate, loop: LoopState, recipe: Recipe, progress) -> bool:
    """Validate, record the history row, keep the best state; True when it is time to stop early."""
    column, label = VAL_METRICS[recipe.val_metric]
    val = validate(model)
    improved = val > loop.best_val
    row = {"step": loop.step, "train_loss": float(np.mean(loop.losses)), column: val, "best": improved}
    loop.history.append(row)
    loop.losses = []
    progress.set_postfix({"train_loss": f"{row['train_loss']:.2f}", column: f"{val:.2f}"})
    log.info(
        "step %d: train loss %.3f, %s %.3f dB%s",
        loop.step,
        row["train_loss"],
        label,
        val,
        " (best)" if improved else "",
    )
    if improved:
        loop.best_val, loop.best_step, loop.stale = val, loop.step, 0
        loop.best_state = cpu_state(model)
        return False
    loop.stale += 1
    if loop.stale >= recipe.patience:
        log.info("early stop at step %d: no improvement in %d evaluations", loop.step, loop.stale)
        return True
    return False


# ---- command line and outputs --------------------------------------------------


def add_recipe_args(parser: argparse.ArgumentParser, defaults: Recipe) -> None:
    group = parser.add_argument_group("recipe")
    group.add_argument("--batch-size", type=int, default=defaults.batch_size)
    group.add_argument("--crop-seconds", type=float, default=defaults.crop_seconds)
    group.add_argument("--lr", type=float, default=defaults.lr)
    group.add_argument("--snr-low", type=float, default=defaults.snr_low_db, help="dB")
    group.add_argument("--snr-high", type=float, default=defaults.snr_high_db, help="dB")
    group.add_argument(
        "--snr-db",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=None,
        help="the SNR range in dB at once (overrides --snr-low and --snr-high)",
    )
    group.add_argument("--max-steps", type=int, default=defaults.max_steps)
    group.add_argument("--val-every", type=int, default=defaults.val_every, help="steps")
    group.add_argument("--patience", type=int, default=defaults.patience, help="evaluations")
    group.add_argument("--seed", type=int, default=defaults.seed)
    group.add_argument(
        "--peak-normalize",
        action="store_true",
        default=defaults.peak_normalize,
        help="peak-normalise each mixture (and its clean target)",
    )
    group.add_argument(
        "--val-metric",
        choices=sorted(VAL_METRICS),
        default=defaults.val_metric,
        help="validation score that picks the best step and stops early: mean SDR, or mean SI-SDR"
        " improvement over the mixture",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--resume-file",
        default=None,
        help="checkpoint of the loop's state: continued from when it exists, deleted when done",
    )
    parser.add_argument(
        "--resume-every", type=int, default=RESUME_EVERY, help="steps between resume checkpoints"
    )


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    if args.snr_db is not None:
        args.snr_low, args.snr_high = args.snr_db
    recipe = Recipe(
        batch_size=args.batch_size,
        crop_seconds=args.crop_seconds,
        lr=args.lr,
        snr_low_db=args.snr_low,
        snr_high_db=args.snr_high,
        max_steps=args.max_steps,
        val_every=args.val_every,
        patience=args.patience,
        seed=args.seed,
        peak_normalize=args.peak_normalize,
        val_metric=args.val_metric,
    )
    problems = [
        name
        for name, ok in [
            ("--batch-size >= 1", recipe.batch_size >= 1),
            ("--crop-seconds > 0", recipe.crop_seconds > 0),
            ("--lr > 0", recipe.lr > 0),
            ("--snr-low <= --snr-high", recipe.snr_low_db <= recipe.snr_high_db),
            ("--max-steps >= 1", recipe.max_steps >= 1),
            ("--val-every >= 1", recipe.val_every >= 1),
            ("--patience >= 1", recipe.patience >= 1),
            ("--threads >= 1", args.threads >= 1),
            ("--resume-every >= 1", args.resume_every >= 1),
            (f"--val-metric in {sorted(VAL_METRICS)}", recipe.val_metric in VAL_METRICS),
        ]
        if not ok
    ]
    if problems:
        raise ValueError(f"invalid recipe: need {', '.join(problems)}")
    return recipe


def plot_history(history: pd.DataFrame, png_path: Path, val_metric: str = "sdr") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_val) = plt.subplots(2, 1, sharex=True, figsize=(6, 5))
    trained = history[history["step"] > 0]
    ax_loss.plot(trained["step"], trained["train_loss"], marker=".")
    ax_loss.set_ylabel("train loss (-SDR, dB)")
    column, label = VAL_METRICS[val_metric]
    ax_val.plot(history["step"], history[column], marker=".")
    best = history.loc[history[column].idxmax()]
    ax_val.axvline(best["step"], color="grey", linestyle="--", label=f"best: step {int(best['step'])}")
    ax_val.set_xlabel("step")
    ax_val.set_ylabel(f"{label} (dB)")
    ax_val.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def write_training_outputs(
    out_dir: Path, model: ConvTasNet, result: TrainResult, config: dict, training_info: dict
) -> None:
    """model.pt (best state), training_log.csv, config.yaml, loss.png into `out_dir`.
    The validation column is named after the metric (val_sdr_db, val_si_sdri_db),
    and so is the best score in the checkpoint (best_val_sdr_db, ...)."""
    import yaml

    model.load_state_dict(result.best_state)
    column = result.val_column
    training = {**training_info, "best_step": result.best_step, f"best_{column}": result.best_val_db}
    save_checkpoint(out_dir / "model.pt", model.cpu(), {"training": training})
    history = pd.DataFrame(result.history, columns=["step", "train_loss", column, "best"])
    atomic_write_text(out_dir / "training_log.csv", history.to_csv(index=False))
    atomic_write_text(out_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    plot_history(history, out_dir / "loss.png", result.val_metric)


def recipe_dict(recipe: Recipe) -> dict:
    return asdict(recipe)
