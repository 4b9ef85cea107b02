"""A synthetic LibriSpeech-like pre-training pool, laid out as prepare_pretrain_pool lays one out:
speech/ (16 kHz FLAC, 10-16 s each, manifest.csv), noises/ and val_noises/ (16-bit WAV, 20-90 s,
noises.csv). Speech-like signals (harmonics with a syllable-rate envelope) and white noises, from
seeds: the same arguments give the same files.
"""

from __future__ import annotations

import time
from functools import partial
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

SR = 16000


def speechlike(seed: int, num_samples: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / SR
    f0 = rng.uniform(90, 220) * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 10)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)) ** 2
    x = x + 0.05 * rng.standard_normal(num_samples)
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


def _utterance(root: Path, i: int) -> int:
    num_samples = int(np.random.default_rng(i).integers(10 * SR, 16 * SR))
    sf.write(root / "speech" / f"u{i:05d}.flac", speechlike(i, num_samples), SR, subtype="PCM_16")
    return num_samples


def _noise(root: Path, folder_and_index: tuple[str, int]) -> None:
    folder, i = folder_and_index
    rng = np.random.default_rng(10_000 + i + (5_000 if folder == "val_noises" else 0))
    num_samples = int(rng.integers(20 * SR, 90 * SR))
    sf.write(root / folder / f"n{i:04d}.wav", (0.2 * rng.standard_normal(num_samples)).astype(np.float32), SR,
             subtype="PCM_16")


def build_pool(root: Path, utterances: int, noises: int = 200, val_noises: int = 10, workers: int = 8) -> dict:
    """Write the pool into `root` unless its manifest is there already; what it holds."""
    root = Path(root)
    manifest = root / "speech" / "manifest.csv"
    start = time.time()
    if not manifest.is_file():
        for folder in ("speech", "noises", "val_noises"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        with Pool(workers) as pool:
            lengths = pool.map(partial(_utterance, root), range(utterances), chunksize=16)
            pool.map(partial(_noise, root),
                     [("noises", i) for i in range(noises)] + [("val_noises", i) for i in range(val_noises)])
        for folder, count in (("noises", noises), ("val_noises", val_noises)):
            pd.DataFrame({"noise_id": [f"n{i:04d}" for i in range(count)],
                          "path": [f"n{i:04d}.wav" for i in range(count)],
                          "kind": "synthetic"}).to_csv(root / folder / "noises.csv", index=False)
        pd.DataFrame({"utt_id": [f"u{i:05d}" for i in range(utterances)],
                      "path": [f"u{i:05d}.flac" for i in range(utterances)], "text": "",
                      "duration_s": np.round(np.array(lengths) / SR, 4)}).to_csv(manifest, index=False)
    table = pd.read_csv(manifest)
    return {"pool_dir": str(root), "utterances": len(table), "speech_hours": round(table["duration_s"].sum() / 3600, 2),
            "noises": len(pd.read_csv(root / "noises" / "noises.csv")), "pool_build_s": round(time.time() - start, 1)}
