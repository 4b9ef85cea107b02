"""XTTS-v2 synthesis speed: real-time factor of the workflow's `xtts` backend.

    python bench/tts_rtf_xtts.py --device cuda [--num-sentences 6] [--batch-size 8] [--sizes xtts_v2]

An XTTS model of the sizes of tts_models/multilingual/multi-dataset/xtts_v2
(default XttsArgs as its config.json: GPT 30 layers x 1024, 16 heads, 6681
text tokens, 1026 audio tokens, at most 605 audio tokens; HiFi-GAN decoder
and speaker encoder) is built with random weights in a temporary folder
(tests/tiny_coqui.py) and loaded by the backend from that folder, as a local
`model`. The conditioning is computed by the backend from an 8 s synthetic
voiced clip; the sentences are the first lines of
workflow_scripts/data/sentences.txt, given to `synthesize_batch` in batches
as the synthesis step does (the backend renders a batch one utterance at a
time, as coqui does).

Random weights know nothing of the text: the GPT stops when it happens to
sample its stop token, or at its length limit (602 codes, 28 s of audio), so
the audio lengths are random. The figures are seconds of synthesis per second
of audio generated (RTF) and milliseconds per GPT code (one code is 46 ms of
audio). `--sizes tiny` runs the tests' tiny model (a check on a CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.concurrent_workers import add_worker_args
from tests.tiny_coqui import XTTS_V2_SIZES, build_xtts
from workflow_scripts.tts import get_backend

SENTENCES_TXT = REPO / "workflow_scripts" / "data" / "sentences.txt"
TINY_SIZES = {"gpt_layers": 2, "model_dim": 32, "heads": 2, "max_audio_tokens": 24}


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


def first_sentences(count: int) -> list[str]:
    """The first `count` sentences of the workflow's sentence list, whitespace normalised."""
    lines = [" ".join(line.split()) for line in SENTENCES_TXT.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line][:count]


def load_backend(name: str, folder: Path, device: str, result: dict, built_s: float, weights_file: str):
    """The backend `name` loaded from `folder`, recording build and load times and the checkpoint size."""
    result["build_s"] = built_s
    result["checkpoint_mb"] = (folder / weights_file).stat().st_size / 2**20
    start = time.perf_counter()
    backend = get_backend(name, device=device, model=str(folder))
    synchronize(device)
    result["load_s"] = time.perf_counter() - start
    return backend


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def instrument(backend, log: list[dict]) -> None:
    """Record the GPT codes generated and the wall time of each utterance (instance-level wrappers)."""
    gpt, generate, synthesize = backend.model.gpt, backend.model.gpt.generate, backend.synthesize
    codes = []

    def counting_generate(*args, **kwargs):
        out = generate(*args, **kwargs)
        codes.append(int(out.shape[-1]))
        return out

    def timed_synthesize(text, conditioning, seed):
        codes.clear()
        synchronize(backend.device)
        start = time.perf_counter()
        audio = synthesize(text, conditioning, seed)
        synchronize(backend.device)
        log.append({"chars": len(text), "pieces": len(codes), "gpt_codes": sum(codes),
                    "audio_s": audio.size / backend.sample_rate, "synth_s": time.perf_counter() - start})
        return audio

    gpt.generate = counting_generate
    backend.synthesize = timed_synthesize


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sizes", choices=["xtts_v2", "tiny"], default="xtts_v2")
    parser.add_argument("--num-sentences", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=8, help="texts per synthesize_batch call")
    parser.add_argument("--out-json", type=Path, default=None)
    add_worker_args(parser, "the same sentences and seeds in every process")
    parser.add_argument("--model", type=Path, default=None, help="load this model folder instead of building one")
    args = parser.parse_args(argv)
    if args.processes:
        return concurrent(args)

    import torch
    import transformers

    # The weights are random, not the CPML-licensed model; the backend checks the variable all the same.
    os.environ["COQUI_TOS_AGREED"] = "1"
    texts = first_sentences(args.num_sentences)
    sizes = XTTS_V2_SIZES if args.sizes == "xtts_v2" else TINY_SIZES
    on_gpu = args.device.startswith("cuda")
    result = {"device": torch.cuda.get_device_name(0) if on_gpu else f"cpu ({platform.machine()})",
              "torch": torch.__version__, "transformers": transformers.__version__, "sizes": sizes,
              "batch_size": args.batch_size}
    with tempfile.TemporaryDirectory(prefix="xtts-bench-") as tmp:
        start = time.perf_counter()
        folder = args.model or build_xtts(Path(tmp) / "xtts_v2", **sizes)
        built_s = 0.0 if args.model else time.perf_counter() - start
        backend = load_backend("xtts", folder, args.device, result, built_s, "model.pth")
    result["parameters_m"] = sum(p.numel() for p in backend.model.parameters()) / 1e6
    result["max_gpt_codes"] = backend.model.gpt.max_gen_mel_tokens

    enrollment = voiced_clip()
    start = time.perf_counter()
    conditioning = backend.compute_conditioning(enrollment, 16000)
    synchronize(args.device)
    result["conditioning_s"] = time.perf_counter() - start

    log: list[dict] = []
    instrument(backend, log)
    backend.synthesize_batch(["Hello there."], conditioning, [12345])  # warm-up: kernels, caches
    result["warmup"] = log.pop()
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    if args.ready:  # a worker: wait until every worker has warmed up
        from bench.concurrent_workers import wait_for_go

        wait_for_go(args.ready, args.go)
    result["window_start"] = time.time()
    start = time.perf_counter()
    for first in range(0, len(texts), args.batch_size):
        batch = texts[first:first + args.batch_size]
        backend.synthesize_batch(batch, conditioning, list(range(first, first + len(batch))))
    synchronize(args.device)
    total_s = time.perf_counter() - start
    result["window_end"] = time.time()
    audio_s = sum(row["audio_s"] for row in log)
    codes = sum(row["gpt_codes"] for row in log)
    result.update(utterances=log, total_synth_s=total_s, total_audio_s=audio_s, rtf=total_s / audio_s,
                  ms_per_gpt_code=1000 * total_s / codes, codes_at_limit=sum(
                      row["gpt_codes"] >= row["pieces"] * result["max_gpt_codes"] for row in log))
    if args.device.startswith("cuda"):
        result["peak_gpu_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30

    print(f"device {result['device']}, torch {result['torch']}, transformers {result['transformers']}")
    print(f"model: {result['parameters_m']:.0f} M parameters, checkpoint {result['checkpoint_mb']:.0f} MB, "
          f"built in {result['build_s']:.1f} s, loaded in {result['load_s']:.1f} s; "
          f"conditioning {result['conditioning_s']:.2f} s; "
          f"warm-up utterance {result['warmup']['synth_s']:.1f} s")
    print("| utterance | chars | GPT codes | audio (s) | synthesis (s) | RTF |")
    print("|---|---|---|---|---|---|")
    for i, row in enumerate(log):
        print(f"| {i} | {row['chars']} | {row['gpt_codes']} | {row['audio_s']:.2f} | {row['synth_s']:.2f} | "
              f"{row['synth_s'] / row['audio_s']:.3f} |")
    print(f"| all | | {codes} | {audio_s:.2f} | {total_s:.2f} | {result['rtf']:.3f} |")
    print(f"{result['ms_per_gpt_code']:.1f} ms per GPT code; {result['codes_at_limit']} of {len(log)} "
          f"utterances ran to the {result['max_gpt_codes']}-code limit"
          + (f"; peak GPU memory {result['peak_gpu_mem_gb']:.2f} GiB" if "peak_gpu_mem_gb" in result else ""))
    if args.out_json:
        args.out_json.write_text(json.dumps(result, indent=2))
    return 0


def concurrent(args) -> int:
    """Workers sharing the device: for each N, N processes synthesize the same
    sentences with the same seeds, started together after their warm-up
    (bench/concurrent_workers.py)."""
    from bench.concurrent_workers import run_counts

    os.environ["COQUI_TOS_AGREED"] = "1"
    sizes = XTTS_V2_SIZES if args.sizes == "xtts_v2" else TINY_SIZES
    with tempfile.TemporaryDirectory(prefix="xtts-bench-") as tmp:
        folder = args.model or build_xtts(Path(tmp) / "xtts_v2", **sizes)
        command = [sys.executable, __file__, "--device", args.device, "--sizes", args.sizes, "--model", str(folder),
                   "--num-sentences", str(args.num_sentences), "--batch-size", str(args.batch_size)]
        run_counts(command, args.processes, Path(tmp) / "runs", "total_audio_s", args.out_json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
