"""Training data: speech and noise folders, audio held in memory or read from disk, the random
crop mixer of training examples, and the fixed validation mixtures.

Data: a speech folder (manifest.csv, format 2) and a noise folder
(noises.csv, format 3). Training examples are drawn on the fly: a random crop
of a random training utterance mixed with a random noise of the set at a
random offset and a random SNR. The signals are held in memory, or read crop
by crop from disk (`AudioFiles`, for pools larger than memory): the same seed
gives the same crops either way. Validation is a fixed, seeded set of
full-length mixtures. In data-parallel training every process draws the
whole batch from the same sampler and reads and mixes only its share of it
(`BatchShare`), so the batches do not depend on the number of processes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from tqdm import tqdm

from workflow_scripts.files.audio import SAMPLE_RATE, AudioError, fit_length, power, read_audio, scale_to_snr
from workflow_scripts.files.folders import DataError, read_noise_table
from workflow_scripts.training.recipe import Recipe

VAL_SNRS_DB = (-2.5, 0.0, 2.5)  # validation mixtures cycle through these
PEAK = 0.9  # peak level of a peak-normalised mixture
MAX_DRAWS = 20  # redraws of a silent crop before giving up


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


def shared_utterances(rows: pd.DataFrame, cache: dict) -> list[np.ndarray]:
    """load_utterances, each file read once: rows that name a file already in `cache` (path ->
    signal) share its array, which the stacked trainer's DeviceCropMixer then holds once."""
    new = rows[~rows["wav"].isin(cache)].drop_duplicates("wav")
    if len(new):
        cache.update(zip(new["wav"], load_utterances(new)))
    return [cache[wav] for wav in rows["wav"]]


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


def float32_pair(mixture: np.ndarray, clean: np.ndarray, peak_normalize: bool) -> tuple[np.ndarray, np.ndarray]:
    """(mixture, clean) as float32, both scaled so that the mixture peaks at PEAK when `peak_normalize`."""
    if peak_normalize:
        gain = PEAK / max(float(np.max(np.abs(mixture))), 1e-8)
        mixture, clean = mixture * gain, clean * gain
    return mixture.astype(np.float32), clean.astype(np.float32)


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
        return float32_pair(mixture, clean, self.recipe.peak_normalize)

    def example(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
        mixtures, cleans, snrs_db = self.batch(rng, 1)
        return mixtures[0], cleans[0], float(snrs_db[0])

    def _make(self, draws) -> list:
        return list(self._pool.map(self._example, draws) if self._pool else map(self._example, draws))

    def batch(self, rng: np.random.Generator, batch_size: int, share: BatchShare | None = None):
        """(mixtures, cleans, snrs_db) of `batch_size` examples, or of this process's share of them.

        Draws come one after another from `rng` and each is kept or, when
        silent, redrawn; as many draws as examples still missing are read at
        once, so the draws are those of drawing example by example. With a
        `share`, every process makes the same draws; each reads the draws
        that fall in its share if all are kept, the processes add up which
        were silent, and each then has its share of the very batch one
        process would have made (reading, where a silent draw moved the
        examples along, the few that another process read)."""
        rank, world_size = (0, 1) if share is None else (share.rank, share.world_size)
        if batch_size % world_size:
            raise ValueError(f"a batch of {batch_size} does not split evenly over {world_size} processes")
        per_process = batch_size // world_size
        kept, silent_draws = [], 0  # kept: (draw, its example where this process made it)
        while len(kept) < batch_size:
            draws = [self._draw(rng) for _ in range(batch_size - len(kept))]
            mine = [j for j in range(len(draws)) if (len(kept) + j) // per_process == rank]
            made = dict(zip(mine, self._make([draws[j] for j in mine]), strict=True))
            silent = np.array([j in made and made[j] is None for j in range(len(draws))])
            if share is not None:
                silent = share.sum_over_processes(silent.astype(np.int64)) > 0
            for j, draw in enumerate(draws):
                if not silent[j]:
                    kept.append((draw, made.get(j)))
                    silent_draws = 0
                    continue
                silent_draws += 1
                if silent_draws == MAX_DRAWS:
                    raise DataError(f"{MAX_DRAWS} draws in a row gave a silent speech or noise crop")
        ours = kept[rank * per_process : (rank + 1) * per_process]
        missing = [draw for draw, example in ours if example is None]
        if missing:
            others = iter(self._make(missing))
            ours = [(draw, next(others) if example is None else example) for draw, example in ours]
        if any(example is None for _, example in ours):
            raise RuntimeError("a draw another process kept is silent here: the processes read different audio")
        mixtures = np.stack([example[0] for _, example in ours])
        cleans = np.stack([example[1] for _, example in ours])
        return mixtures, cleans, np.array([draw[-1] for draw, _ in ours])


@dataclass(frozen=True)
class BatchShare:
    """This process's share of each batch in data-parallel training: examples
    [rank * b, (rank + 1) * b) of a batch, b = batch size / world size.
    `sum_over_processes` adds a small integer array over the processes."""

    rank: int
    world_size: int
    sum_over_processes: Callable[[np.ndarray], np.ndarray]


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
        pairs.append(float32_pair(mixture, clean, peak_normalize))
    return pairs
