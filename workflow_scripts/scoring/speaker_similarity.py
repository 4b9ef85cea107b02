"""Speaker-embedding cosine similarity (SECS) of speech to an enrollment clip.

Two encoders, each giving L2-normalised embeddings of 16 kHz float audio:

- `SpeakerEncoder`: Resemblyzer's VoiceEncoder (a 3-layer LSTM d-vector
  model that ships its own weights, so it always works offline); an
  utterance's embedding is the normalised mean of the embeddings of its
  1.6 s partial windows, exactly as `VoiceEncoder.embed_utterance` computes
  it, but with the windows of many files forwarded together in batches.
- the speechbrain x-vector the challenge used (`workflow_scripts.scoring.xvector`,
  clips peak-normalised first), loaded by `load_xvector_encoder`, which
  says why when its weights are not there.
"""

from __future__ import annotations

import logging
import math
import os
import warnings

import numpy as np
from scipy import stats

from workflow_scripts.runtime.model_cache import XVECTOR_MODEL

log = logging.getLogger(__name__)

ENCODER_NAME = "resemblyzer-0.1.4"
XVECTOR_DEFAULT_SOURCE = XVECTOR_MODEL
EMBED_FILES_PER_BATCH = 16


def _import_resemblyzer():
    with warnings.catch_warnings():  # webrtcvad imports the deprecated pkg_resources
        warnings.simplefilter("ignore")
        import resemblyzer
        from resemblyzer import audio as resemblyzer_audio
    return resemblyzer, resemblyzer_audio


class SpeakerEncoder:
    """Resemblyzer d-vectors of 16 kHz mono float32 audio."""

    name = ENCODER_NAME

    def __init__(self, device: str = "cpu", batch_windows: int = 64) -> None:
        resemblyzer, self._audio = _import_resemblyzer()
        self.encoder = resemblyzer.VoiceEncoder(device=device, verbose=False)
        self.batch_windows = batch_windows

    def _windows(self, audio: np.ndarray) -> np.ndarray:
        """Mel spectrograms of the partial windows of one file (as embed_utterance cuts them)."""
        wav = self._audio.preprocess_wav(np.asarray(audio, dtype=np.float32))
        if wav.size == 0:  # voice activity detection found nothing: keep the whole file
            wav = self._audio.normalize_volume(np.asarray(audio, dtype=np.float32), -30, increase_only=True)
        wav_slices, mel_slices = self.encoder.compute_partial_slices(wav.size, rate=1.3, min_coverage=0.75)
        if wav_slices[-1].stop >= wav.size:
            wav = np.pad(wav, (0, wav_slices[-1].stop - wav.size))
        mel = self._audio.wav_to_mel_spectrogram(wav)
        return np.stack([mel[s] for s in mel_slices])

    def embed(self, audios: list[np.ndarray]) -> np.ndarray:
        """One L2-normalised embedding per audio, shape (len(audios), 256)."""
        import torch

        windows = [self._windows(audio) for audio in audios]
        counts = [w.shape[0] for w in windows]
        all_windows = np.concatenate(windows)
        partials = []
        with torch.no_grad():
            for start in range(0, all_windows.shape[0], self.batch_windows):
                batch = torch.from_numpy(all_windows[start:start + self.batch_windows])
                partials.append(self.encoder(batch.to(self.encoder.device)).cpu().numpy())
        partials = np.concatenate(partials)
        embeddings = []
        for chunk in np.split(partials, np.cumsum(counts)[:-1]):
            mean = chunk.mean(axis=0)
            embeddings.append(mean / np.linalg.norm(mean))
        return np.stack(embeddings).astype(np.float32)


def load_xvector_encoder(source: str, model_dir: str | os.PathLike = "models", device: str = "cpu"):
    """(XVectorEncoder or None, the reason it is None).

    "none" disables it. A hub id whose weights are not in `model_dir` gives a
    reason (scoring goes on without x-vectors); a local folder that does not
    load is an error, since it was named explicitly.
    """
    from workflow_scripts.runtime.model_cache import is_local

    if source in ("", "none"):
        return None, "x-vector SECS disabled (--secs-xvector-model none)"
    try:
        from workflow_scripts.scoring.xvector import XVectorEncoder
    except ImportError as exc:
        return None, f"x-vector encoder unavailable ({exc})"
    if is_local(source):
        return XVectorEncoder(source=source, model_dir=model_dir, device=device), ""
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"  # scoring reads the model cache and never downloads
    try:
        return XVectorEncoder(source=source, model_dir=model_dir, device=device), ""
    except (ImportError, OSError, RuntimeError, ValueError) as exc:
        log.warning("x-vector model %s not loaded: %s", source, exc)
        return None, f"x-vector model {source} not loaded ({exc})"
    finally:
        if previous is None:
            del os.environ["HF_HUB_OFFLINE"]
        else:
            os.environ["HF_HUB_OFFLINE"] = previous


def similarity_to_enrollment(encoder, enrollment: np.ndarray, audios: list[np.ndarray],
                             files_per_batch: int = EMBED_FILES_PER_BATCH, desc: str = "SECS") -> list[float]:
    """SECS of each utterance against the enrollment clip, embedding `files_per_batch` files at once."""
    from tqdm import tqdm

    enrollment_embedding = encoder.embed([enrollment])[0]
    scores = []
    for start in tqdm(range(0, len(audios), files_per_batch), desc=desc, unit="batch"):
        for embedding in encoder.embed(audios[start:start + files_per_batch]):
            scores.append(cosine_similarity(enrollment_embedding, embedding))
    return scores


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between two vectors (NaN if either is zero)."""
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / norm) if norm > 0 else math.nan


def mean_ci95(values) -> tuple[float, float, float]:
    """(mean, low, high): the mean of the finite values and its 95% t-interval.

    The interval is NaN with fewer than two values.
    """
    values = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    if values.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if values.size < 2:
        return mean, math.nan, math.nan
    half_width = float(stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return mean, mean - half_width, mean + half_width
