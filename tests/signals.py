"""Synthetic test signals: speech-like tones and coloured noises, deterministic per seed."""

import numpy as np

from workflow_scripts.files.audio import SAMPLE_RATE


def speech_like(num_samples: int, seed: int) -> np.ndarray:
    """A harmonic tone with a syllable-rate envelope and a silent gap."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / SAMPLE_RATE
    f0 = rng.uniform(100, 220) * (1 + 0.1 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    wave = sum(np.sin(h * phase) / h for h in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(3, 5) * t) ** 2
    audio = 0.3 * wave * envelope + 0.01 * rng.standard_normal(num_samples)
    gap = rng.integers(0, num_samples // 2)
    audio[gap : gap + num_samples // 8] = 0.0
    return audio.astype(np.float32)


def noise_like(num_samples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = np.convolve(rng.standard_normal(num_samples + 8), np.ones(8) / 8, mode="valid")[:num_samples]
    return (0.2 * noise).astype(np.float32)
