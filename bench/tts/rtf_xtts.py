"""XTTS-v2 synthesis speed: real-time factor of the workflow's `xtts` backend.

    python bench/tts/rtf_xtts.py --device cuda [--num-sentences 6] [--batch-size 8] [--sizes xtts_v2]
        [--backend-batch-sizes 1 4 8 16] [--codes-per-utterance 150] [--check-greedy 4]

An XTTS model of the sizes of tts_models/multilingual/multi-dataset/xtts_v2
(default XttsArgs as its config.json: GPT 30 layers x 1024, 16 heads, 6681
text tokens, 1026 audio tokens, at most 605 audio tokens; HiFi-GAN decoder
and speaker encoder) is built with random weights in a temporary folder
(workflow_scripts/testing/tiny_models.py) and loaded by the backend from
that folder, as a local `model`. The conditioning is computed by the backend from an 8 s synthetic
voiced clip; the sentences are the first lines of
workflow_scripts/data/sentences.txt, given to `synthesize_batch` in batches
as the synthesis step does. `--backend-batch-sizes` runs the backend with
each `batch_size` option in turn on the same loaded model (1: one utterance
at a time through coqui's inference; more: batched GPT generation), with the
same sentences and seeds.

Random weights know nothing of the text: the GPT stops when it happens to
sample its stop token, or at its length limit (602 codes, 28 s of audio), so
the audio lengths are random. `--codes-per-utterance L` makes every piece
exactly L codes and the stop code (a logits processor put in front of the
others: the stop code is banned before step L and forced at it), so that
every batch size does the same work. The figures are seconds of synthesis
per second of audio generated (RTF) and milliseconds per GPT code (one code
is 46 ms of audio). `--check-greedy K` first renders the first K sentences
with top_k=1 one at a time and batched and compares their codes and audio.
`--sizes tiny` runs the tiny model of the tests (a check on a CPU).
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

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.tts.common import add_synthesis_args, build_and_load, first_sentences, synchronize, voiced_clip
from workflow_scripts.testing.tiny_models import XTTS_V2_SIZES, build_xtts

TINY_SIZES = {"gpt_layers": 2, "model_dim": 32, "heads": 2, "max_audio_tokens": 24}


class FixedLength:
    """Logits processor: no stop code before `codes` codes, then only the stop code."""

    def __init__(self, codes: int, stop: int) -> None:
        self.codes, self.stop, self.start = codes, stop, None

    def __call__(self, input_ids, scores):
        self.start = input_ids.shape[1] if self.start is None else self.start
        scores = scores.clone()
        if input_ids.shape[1] - self.start < self.codes:
            scores[:, self.stop] = float("-inf")
        else:
            scores.fill_(float("-inf"))
            scores[:, self.stop] = 0.0
        return scores


def instrument(backend, log: list[dict], generated: list[list[int]], fixed_length: dict) -> None:
    """Record the codes of every generated row and the wall time of each `synthesize_batch` call
    (instance-level wrappers); with fixed_length["codes"] set, every piece gets that many codes."""
    from transformers import LogitsProcessorList

    inference, synthesize_batch = backend.model.gpt.gpt_inference, backend.synthesize_batch
    generate, stop = inference.generate, backend.model.gpt.stop_audio_token

    def counting_generate(inputs, *args, **kwargs):
        if fixed_length.get("codes") is not None:
            kwargs["logits_processor"] = LogitsProcessorList(
                [FixedLength(fixed_length["codes"], stop), *(kwargs.get("logits_processor") or [])])
        out = generate(inputs, *args, **kwargs)
        for row in out[:, inputs.shape[1]:].tolist():
            generated.append(row[: row.index(stop) + 1] if stop in row else row)
        return out

    def timed_synthesize_batch(texts, conditioning, seeds):
        first = len(generated)
        synchronize(backend.device)
        start = time.perf_counter()
        audio = synthesize_batch(texts, conditioning, seeds)
        synchronize(backend.device)
        log.append({"texts": len(texts), "chars": sum(map(len, texts)), "pieces": len(generated) - first,
                    "gpt_codes": sum(map(len, generated[first:])),
                    "audio_s": [a.size / backend.sample_rate for a in audio],
                    "synth_s": time.perf_counter() - start})
        return audio

    inference.generate = counting_generate
    backend.synthesize_batch = timed_synthesize_batch


def check_greedy(backend, conditioning: dict, texts: list[str], generated: list) -> dict:
    """The texts with top_k=1 one at a time (coqui's inference) and in one batch: same codes and audio?"""
    saved_top_k, saved_batch_size = backend.settings["top_k"], backend.batch_size
    backend.settings["top_k"] = 1
    try:
        generated.clear()
        alone = [backend.synthesize(text, conditioning, i) for i, text in enumerate(texts)]
        alone_codes = sorted(map(tuple, generated))
        generated.clear()
        backend.batch_size = len(texts)
        batched = backend.synthesize_batch(texts, conditioning, list(range(len(texts))))
        batched_codes = sorted(map(tuple, generated))
    finally:
        backend.settings["top_k"], backend.batch_size = saved_top_k, saved_batch_size
        generated.clear()
    same_shape = all(a.shape == b.shape for a, b in zip(alone, batched))
    return {"texts": len(texts), "codes_equal": alone_codes == batched_codes,
            "codes_per_piece": [len(c) for c in alone_codes], "audio_shapes_equal": same_shape,
            "max_abs_audio_diff": max(float(np.abs(a - b).max()) for a, b in zip(alone, batched))
            if same_shape else None}


def measure(backend, conditioning: dict, texts: list[str], batch_size: int, log: list[dict], args) -> dict:
    """One timed pass over the texts in chunks of `batch_size` (the step's), seeds 0, 1, ..."""
    import torch

    log.clear()
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    run = {"backend_batch_size": backend.batch_size, "window_start": time.time()}
    start = time.perf_counter()
    for first in range(0, len(texts), batch_size):
        batch = texts[first:first + batch_size]
        backend.synthesize_batch(batch, conditioning, list(range(first, first + len(batch))))
    synchronize(args.device)
    total_s = time.perf_counter() - start
    run["window_end"] = time.time()
    audio_s = sum(sum(row["audio_s"]) for row in log)
    codes = sum(row["gpt_codes"] for row in log)
    pieces = sum(row["pieces"] for row in log)
    run.update(calls=list(log), total_synth_s=total_s, total_audio_s=audio_s, rtf=total_s / audio_s,
               gpt_codes=codes, pieces=pieces, ms_per_gpt_code=1000 * total_s / codes)
    if args.device.startswith("cuda"):
        run["peak_gpu_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_synthesis_args(parser, ["xtts_v2", "tiny"], 6, "the same sentences and seeds in every process")
    parser.add_argument("--backend-batch-sizes", type=int, nargs="+", default=[1],
                        help="the backend's batch_size option (GPT rows at once), each measured in turn "
                             "(with --processes: the first one)")
    parser.add_argument("--codes-per-utterance", type=int, default=None,
                        help="force every piece to this many GPT codes (default: random lengths)")
    parser.add_argument("--check-greedy", type=int, default=0,
                        help="first compare the first K sentences with top_k=1, one at a time and batched")
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
              "batch_size": args.batch_size, "codes_per_utterance": args.codes_per_utterance}
    backend = build_and_load("xtts", lambda tmp: build_xtts(tmp / "xtts_v2", **sizes), args, result, "model.pth")
    result["parameters_m"] = sum(p.numel() for p in backend.model.parameters()) / 1e6
    result["max_gpt_codes"] = backend.model.gpt.max_gen_mel_tokens

    enrollment = voiced_clip()
    start = time.perf_counter()
    conditioning = backend.compute_conditioning(enrollment, 16000)
    synchronize(args.device)
    result["conditioning_s"] = time.perf_counter() - start

    log: list[dict] = []
    generated: list[list[int]] = []
    fixed_length = {"codes": args.codes_per_utterance}
    instrument(backend, log, generated, fixed_length)
    backend.synthesize_batch(["Hello there."], conditioning, [12345])  # warm-up: kernels, caches
    result["warmup"] = log.pop()
    if args.check_greedy:
        result["check_greedy"] = check_greedy(backend, conditioning, texts[:args.check_greedy], generated)
        print(f"greedy check: {result['check_greedy']}", flush=True)
    runs = []
    for backend_batch_size in args.backend_batch_sizes:
        backend.batch_size = backend_batch_size  # what the backend's batch_size option sets
        if backend_batch_size > 1:  # warm-up at this batch size, with short pieces
            fixed_length["codes"] = 8
            backend.synthesize_batch(texts[:backend_batch_size], conditioning, [12345] * min(
                backend_batch_size, len(texts)))
            fixed_length["codes"] = args.codes_per_utterance
            log.pop()
        if args.ready:  # a worker: wait until every worker has warmed up
            from bench.concurrent_workers import wait_for_go

            wait_for_go(args.ready, args.go)
        generated.clear()
        runs.append(measure(backend, conditioning, texts, args.batch_size, log, args))
        runs[-1]["codes_at_limit"] = sum(len(codes) >= result["max_gpt_codes"] for codes in generated)
        run = runs[-1]
        print(f"backend batch_size {backend_batch_size}: RTF {run['rtf']:.4f}, "
              f"{run['ms_per_gpt_code']:.2f} ms per GPT code, {run['gpt_codes']} codes in "
              f"{run['pieces']} pieces, {run['total_audio_s']:.1f} s of audio in {run['total_synth_s']:.1f} s"
              + (f", peak GPU memory {run['peak_gpu_mem_gb']:.2f} GiB" if "peak_gpu_mem_gb" in run else ""),
              flush=True)
        if args.out_json:  # after each run, so that a cut-off bench keeps what it measured
            partial = {**result, **(runs[0] if len(runs) == 1 else {}), "runs": runs}
            args.out_json.write_text(json.dumps(partial, indent=2))
    if len(runs) == 1:
        result.update(runs[0])
    result["runs"] = runs

    print(f"device {result['device']}, torch {result['torch']}, transformers {result['transformers']}")
    print(f"model: {result['parameters_m']:.0f} M parameters, checkpoint {result['checkpoint_mb']:.0f} MB, "
          f"built in {result['build_s']:.1f} s, loaded in {result['load_s']:.1f} s; "
          f"conditioning {result['conditioning_s']:.2f} s; "
          f"warm-up utterance {result['warmup']['synth_s']:.1f} s")
    base = runs[0]
    print("| backend batch_size | pieces | GPT codes | audio (s) | synthesis (s) | RTF | x first | "
          "ms per code | codes at limit | peak GPU memory (GiB) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        print(f"| {run['backend_batch_size']} | {run['pieces']} | {run['gpt_codes']} | "
              f"{run['total_audio_s']:.1f} | {run['total_synth_s']:.1f} | {run['rtf']:.4f} | "
              f"{base['rtf'] / run['rtf']:.2f} | {run['ms_per_gpt_code']:.2f} | {run['codes_at_limit']} | "
              f"{run.get('peak_gpu_mem_gb', 0.0):.2f} |")
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
                   "--num-sentences", str(args.num_sentences), "--batch-size", str(args.batch_size),
                   "--backend-batch-sizes", str(args.backend_batch_sizes[0])]
        if args.codes_per_utterance is not None:
            command += ["--codes-per-utterance", str(args.codes_per_utterance)]
        run_counts(command, args.processes, Path(tmp) / "runs", "total_audio_s", args.out_json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
