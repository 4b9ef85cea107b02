"""Speaker-embedding cosine similarity (SECS) with Resemblyzer.

Resemblyzer's VoiceEncoder (a 3-layer LSTM d-vector model that ships its own
weights) embeds 16 kHz float audio; an utterance's embedding is the
normalised mean of the embeddings of its 1.6 s partial windows, exactly as
`VoiceEncoder.embed_utterance` computes it, but with the windows of many
files forwarded together in batches.
"""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
from scipy import stats

log = logging.getLogger(__name__)

ENCODER_NAME = "resemblyzer-0.1.4"


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
