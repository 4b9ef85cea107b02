"""What the TTS and scoring benches share: the sentences, a voice-like test clip, device sync, backend loading."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SENTENCES_TXT = REPO / "workflow_scripts" / "data" / "sentences.txt"


def first_sentences(count: int | None = None) -> list[str]:
    """The first `count` (default: all) sentences of the workflow's sentence list, whitespace normalised."""
    lines = [" ".join(line.split()) for line in SENTENCES_TXT.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line][:count]


def voiced_clip(seconds: float = 8.0, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A deterministic voice-like test signal: harmonics of a wandering F0 under a syllable envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    drift = 0.0002 * rng.standard_normal(t.size).cumsum()
    f0_hz = 120.0 * np.exp(0.1 * np.sin(2 * np.pi * 0.7 * t) + drift)
    phase = 2 * np.pi * np.cumsum(f0_hz) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 30))
    envelope = np.clip(np.sin(2 * np.pi * 4.0 * t), 0.0, None) ** 0.5
    clip = voiced * envelope + 0.01 * rng.standard_normal(t.size)
    return (0.5 * clip / np.max(np.abs(clip))).astype(np.float32)


def synchronize(device: str) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so that wall times include it."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def add_synthesis_args(parser, sizes: list[str], num_sentences: int, same_work: str) -> None:
    """The options every synthesis bench takes (the first of `sizes` is the default); `same_work`
    says what every worker process of a --processes run does."""
    from bench.concurrent_workers import add_worker_args

    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sizes", choices=sizes, default=sizes[0])
    parser.add_argument("--num-sentences", type=int, default=num_sentences)
    parser.add_argument("--batch-size", type=int, default=8, help="texts per synthesize_batch call")
    parser.add_argument("--out-json", type=Path, default=None)
    parser.add_argument("--model", type=Path, default=None, help="load this model folder instead of building one")
    add_worker_args(parser, same_work)


def build_and_load(name: str, build, args, result: dict, weights_file: str):
    """The backend `name` loaded from `args.model`, or from the model folder that `build(tmp)` writes
    in a temporary folder and returns; records build and load times and the checkpoint's size."""
    from workflow_scripts.tts import get_backend

    with tempfile.TemporaryDirectory(prefix=f"{name}-bench-") as tmp:
        start = time.perf_counter()
        folder = args.model or build(Path(tmp))
        result["build_s"] = 0.0 if args.model else time.perf_counter() - start
        result["checkpoint_mb"] = (Path(folder) / weights_file).stat().st_size / 2**20
        start = time.perf_counter()
        backend = get_backend(name, device=args.device, model=str(folder))
        synchronize(args.device)
        result["load_s"] = time.perf_counter() - start
    return backend
