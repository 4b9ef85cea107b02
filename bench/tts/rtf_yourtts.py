"""YourTTS synthesis speed: real-time factor of the workflow's `yourtts` backend.

    python bench/tts/rtf_yourtts.py --device cuda [--num-sentences 32] [--batch-size 8]
        [--sizes your_tts] [--target-chars-per-s 15] [--budget-s 150] [--out-json FILE]

A YourTTS model of the sizes of tts_models/multilingual/multi-dataset/your_tts
(YOURTTS_SIZES of workflow_scripts/testing/tiny_models.py: coqui Vits with 192
hidden channels, a 10-layer text encoder (FFN 768, 2 heads), 16-layer
posterior encoder, 4 flow layers, stochastic duration predictor, HiFi-GAN
decoder from 512 channels with resblock type "2", 512-d d-vectors, 3 language
embeddings of 4; H/ASP ResNet speaker encoder on 64 mel bands) is built with random weights in a temporary
folder in the hub layout and loaded by the backend from there, as a local
`model`. The conditioning (the d-vector of an 8 s synthetic voiced clip) is
computed once by the backend; the sentences are the first lines of
workflow_scripts/data/sentences.txt, given to `synthesize_batch` in batches as
the synthesis step does (the backend renders one utterance at a time).

Random weights know nothing of the text: the duration predictor gives random
durations, so the audio is not as long as speech of that text would be. The
figures are per second of audio made. A second pass rescales the durations
(the backend's `length_scale`) so that the audio runs at
`--target-chars-per-s` characters of text per second (LJSpeech's pace is about
15), to give the rate at a speech-like length. `--sizes tiny` runs the tiny
model of the tests (a check on a CPU). The run stops starting new batches once
`--budget-s` seconds have passed.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.tts.common import add_synthesis_args, build_and_load, first_sentences, synchronize, voiced_clip
from workflow_scripts.testing.tiny_models import YOURTTS_SIZES, build_yourtts


def timed_pass(backend, texts: list[str], conditioning: dict, batch_size: int, device: str,
               deadline: float) -> dict:
    """Synthesize `texts` in batches (each utterance timed); stops at `deadline` (perf_counter)."""
    rows = []
    synthesize = backend.synthesize

    def timed_synthesize(text, conditioning, seed):
        synchronize(device)
        start = time.perf_counter()
        audio = synthesize(text, conditioning, seed)
        synchronize(device)
        rows.append({"chars": len(text), "audio_s": audio.size / backend.sample_rate,
                     "synth_s": time.perf_counter() - start})
        return audio

    backend.synthesize = timed_synthesize
    try:
        start = time.perf_counter()
        for first in range(0, len(texts), batch_size):
            if time.perf_counter() > deadline:
                break
            batch = texts[first:first + batch_size]
            backend.synthesize_batch(batch, conditioning, list(range(first, first + len(batch))))
        synchronize(device)
        total_s = time.perf_counter() - start
    finally:
        backend.synthesize = synthesize
    audio_s = sum(row["audio_s"] for row in rows)
    chars = sum(row["chars"] for row in rows)
    return {"utterances": rows, "n": len(rows), "total_synth_s": total_s, "total_audio_s": audio_s,
            "chars": chars, "chars_per_audio_s": chars / audio_s, "rtf": total_s / audio_s,
            "length_scale": float(backend.model.length_scale)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_synthesis_args(parser, ["your_tts", "tiny"], 32,
                       "the same sentences, seeds and --length-scale in every process")
    parser.add_argument("--target-chars-per-s", type=float, default=15.0,
                        help="pace of the second pass (0: no second pass)")
    parser.add_argument("--budget-s", type=float, default=150.0,
                        help="start no new batch after this many seconds from the start")
    parser.add_argument("--length-scale", type=float, default=None, help="fixed length_scale (one pass)")
    args = parser.parse_args(argv)
    if args.processes:
        return concurrent(args)

    import torch
    import TTS

    deadline = time.perf_counter() + args.budget_s
    texts = first_sentences(args.num_sentences)
    sizes = YOURTTS_SIZES if args.sizes == "your_tts" else {}
    on_gpu = args.device.startswith("cuda")
    result = {"device": torch.cuda.get_device_name(0) if on_gpu else f"cpu ({platform.machine()})",
              "torch": torch.__version__, "coqui_tts": TTS.__version__, "sizes": sizes or "tiny",
              "batch_size": args.batch_size, "num_sentences": len(texts)}
    backend = build_and_load("yourtts", lambda tmp: build_yourtts(tmp / "your_tts", **sizes), args, result,
                             "model_file.pth")
    model = backend.model
    encoder = model.speaker_manager.encoder
    result["parameters_m"] = sum(p.numel() for p in model.parameters()) / 1e6
    result["speaker_encoder_parameters_m"] = sum(p.numel() for p in encoder.parameters()) / 1e6

    enrollment = voiced_clip()
    start = time.perf_counter()
    conditioning = backend.compute_conditioning(enrollment, 16000)
    synchronize(args.device)
    result["conditioning_s"] = time.perf_counter() - start
    start = time.perf_counter()
    backend.synthesize_batch(["Hello there."], conditioning, [12345])  # warm-up: kernels, caches
    synchronize(args.device)
    result["warmup_s"] = time.perf_counter() - start

    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    if args.length_scale:
        model.length_scale = args.length_scale
    if args.ready:  # a worker: wait until every worker has warmed up
        from bench.concurrent_workers import wait_for_go

        wait_for_go(args.ready, args.go)
    result["window_start"] = time.time()
    passes = [timed_pass(backend, texts, conditioning, args.batch_size, args.device, deadline)]
    result["window_end"], result["total_audio_s"] = time.time(), passes[0]["total_audio_s"]
    if args.target_chars_per_s > 0 and not args.length_scale and time.perf_counter() < deadline:
        model.length_scale = model.length_scale * passes[0]["chars_per_audio_s"] / args.target_chars_per_s
        passes.append(timed_pass(backend, texts, conditioning, args.batch_size, args.device, deadline))
    result["passes"] = passes
    if on_gpu:
        result["peak_gpu_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30

    print(f"device {result['device']}, torch {result['torch']}, coqui-tts {result['coqui_tts']}")
    print(f"model: {result['parameters_m']:.1f} M parameters (speaker encoder "
          f"{result['speaker_encoder_parameters_m']:.1f} M), checkpoint {result['checkpoint_mb']:.0f} MB, "
          f"built in {result['build_s']:.1f} s, loaded in {result['load_s']:.1f} s; conditioning "
          f"{result['conditioning_s']:.3f} s; warm-up utterance {result['warmup_s']:.2f} s"
          + (f"; peak GPU memory {result['peak_gpu_mem_gb']:.2f} GiB" if on_gpu else ""))
    print("| pass | length_scale | utterances | chars | audio (s) | chars per audio s | synthesis (s) | RTF |")
    print("|---|---|---|---|---|---|---|---|")
    for name, p in zip(("random durations", "speech-like pace"), passes):
        print(f"| {name} | {p['length_scale']:.2f} | {p['n']} | {p['chars']} | {p['total_audio_s']:.1f} | "
              f"{p['chars_per_audio_s']:.1f} | {p['total_synth_s']:.2f} | {p['rtf']:.4f} |")
    if args.out_json:
        args.out_json.parent.mkdir(parents=True, exist_ok=True)
        args.out_json.write_text(json.dumps(result, indent=2))
    return 0


def concurrent(args) -> int:
    """For each N, N processes synthesize the same sentences with the same seeds at a fixed
    length_scale, started together after their warm-up (bench/concurrent_workers.py)."""
    from bench.concurrent_workers import run_counts

    with tempfile.TemporaryDirectory(prefix="yourtts-bench-") as tmp:
        sizes = YOURTTS_SIZES if args.sizes == "your_tts" else {}
        folder = args.model or build_yourtts(Path(tmp) / "your_tts", **sizes)
        command = [sys.executable, __file__, "--device", args.device, "--sizes", args.sizes, "--model", str(folder),
                   "--num-sentences", str(args.num_sentences), "--batch-size", str(args.batch_size),
                   "--length-scale", str(args.length_scale or 1.0), "--budget-s", str(args.budget_s)]
        run_counts(command, args.processes, Path(tmp) / "runs", "total_audio_s", args.out_json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
