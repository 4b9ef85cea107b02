"""SpeechT5 synthesis speed: real-time factor of the workflow's backend, batched and one at a time.

    python bench/tts/rtf_speecht5.py --device cuda [--batch-sizes 8 16 32] [--num-sentences 32]
        [--num-single 8] [--maxlenratio 4.5] [--no-tf32]

Production-size SpeechT5 (default SpeechT5Config, as microsoft/speecht5_tts)
and HiFi-GAN (default SpeechT5HifiGanConfig, as microsoft/speecht5_hifigan)
are built with random weights in a temporary folder and loaded by the
`speecht5` backend (from_pretrained, its batched decoder, the vocoder); the
sentences are the first lines of workflow_scripts/data/sentences.txt. RTF is
synthesis seconds (text in, 16 kHz audio out on the host) per second of
audio produced.

Random weights decide nothing sensible about stopping (an untrained stop head
says about 0.5 per frame, which stops at once with the default threshold), so
the bench sets threshold 3, more than a step's stop probabilities can sum to:
every utterance decodes to exactly maxlenratio x tokens / 2 steps. The
default maxlenratio 4.5 gives 72 ms of audio per token (character), about
the pace of read English, so lengths, and the cost of each step, are those of
real speech. The conditioning is the x-vector of a noise clip from a tiny
random x-vector model (workflow_scripts/testing/tiny_models.py); the speaker
encoder is not timed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.tts.common import first_sentences, synchronize
from workflow_scripts.testing.tiny_models import build_speecht5_hifigan, build_speecht5_tts, build_tiny_xvector
from workflow_scripts.tts import get_backend


def instrument(backend) -> dict:
    """Accumulate the time spent decoding and vocoding, and the decoder steps run."""
    spent = {"decode_s": 0.0, "vocode_s": 0.0, "steps": 0}
    decode_steps, vocode = backend._decode_steps, backend._vocode

    def timed_decode(*args):
        synchronize(backend.device)
        start = time.perf_counter()
        frames, num_steps = decode_steps(*args)
        synchronize(backend.device)
        spent["decode_s"] += time.perf_counter() - start
        spent["steps"] += frames.size(1) // backend.model.config.reduction_factor
        return frames, num_steps

    def timed_vocode(*args):
        start = time.perf_counter()
        waves = vocode(*args)  # returns host arrays: synchronised
        spent["vocode_s"] += time.perf_counter() - start
        return waves

    backend._decode_steps, backend._vocode = timed_decode, timed_vocode
    return spent


def timed(backend, spent, texts, conditioning, seeds, batch_size):
    """(outputs, seconds, breakdown) of synthesizing `texts` in batches of `batch_size`."""
    outputs = []
    spent.update(decode_s=0.0, vocode_s=0.0, steps=0)
    synchronize(backend.device)
    start = time.perf_counter()
    for first in range(0, len(texts), batch_size):
        outputs += backend.synthesize_batch(texts[first:first + batch_size], conditioning,
                                            seeds[first:first + batch_size])
    synchronize(backend.device)
    return outputs, time.perf_counter() - start, dict(spent)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--num-sentences", type=int, default=32, help="sentences rendered batched")
    parser.add_argument("--num-single", type=int, default=8, help="of those, rendered one at a time too")
    parser.add_argument("--maxlenratio", type=float, default=4.5)
    parser.add_argument("--no-tf32", action="store_true",
                        help="full fp32 convolutions too (cuDNN uses TF32 for them by default)")
    args = parser.parse_args(argv)

    import torch
    import transformers

    if args.no_tf32:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False

    lines = first_sentences()
    texts = lines[: args.num_sentences]
    seeds = list(range(len(texts)))
    with tempfile.TemporaryDirectory(prefix="speecht5-bench-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        options = {
            "model": build_speecht5_tts(root / "speecht5_tts", tiny=False, sentences=lines),
            "vocoder": build_speecht5_hifigan(root / "speecht5_hifigan", tiny=False),
            "speaker_encoder": build_tiny_xvector(root / "xvector"),
            "threshold": 3.0, "maxlenratio": args.maxlenratio, "max_batch": max(args.batch_sizes),
        }
        print(f"built random checkpoints in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        backend = get_backend("speecht5", device=args.device, model_dir=str(root / "cache"), **options)
        noise = np.random.default_rng(0).standard_normal(5 * 16000).astype(np.float32)
        conditioning = backend.compute_conditioning(noise, 16000)
        model, vocoder = backend.model, backend.vocoder
        params_m = sum(p.numel() for p in model.parameters()) / 1e6
        vocoder_m = sum(p.numel() for p in vocoder.parameters()) / 1e6
        spent = instrument(backend)
        timed(backend, spent, texts[:4], conditioning, seeds[:4], 4)  # warm-up

        rows = []
        batched = {}
        for batch_size in args.batch_sizes:
            outputs, seconds, breakdown = timed(backend, spent, texts, conditioning, seeds, batch_size)
            batched[batch_size] = outputs
            rows.append(("batched", batch_size, outputs, seconds, breakdown))
        single_texts = texts[: args.num_single]
        outputs, seconds, breakdown = timed(backend, spent, single_texts, conditioning,
                                            seeds[: args.num_single], 1)
        rows.append(("one at a time", 1, outputs, seconds, breakdown))

        device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
        print(f"device: {device_name}; torch {torch.__version__}, transformers {transformers.__version__}")
        tf32 = "off" if args.no_tf32 else "cuDNN default"
        print(f"SpeechT5 {params_m:.1f} M parameters, HiFi-GAN {vocoder_m:.1f} M, fp32 (TF32: {tf32}); "
              f"threshold 3, maxlenratio {args.maxlenratio}")
        print()
        print("| mode | batch | utterances | audio (s) | synthesis (s) | RTF | x real time "
              "| decoder steps | decoding (s) | ms per step | postnet + vocoder (s) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for mode, batch_size, outputs, seconds, parts in rows:
            audio_s = sum(out.size for out in outputs) / 16000
            print(f"| {mode} | {batch_size} | {len(outputs)} | {audio_s:.1f} | {seconds:.2f} | "
                  f"{seconds / audio_s:.4f} | {audio_s / seconds:.1f} | {parts['steps']} | "
                  f"{parts['decode_s']:.2f} | {1000 * parts['decode_s'] / parts['steps']:.2f} | "
                  f"{parts['vocode_s']:.2f} |")
        print()
        for batch_size, outputs in batched.items():
            worst = max(float(np.max(np.abs(a - b))) / float(np.max(np.abs(b)))
                        for a, b in zip(outputs, rows[-1][2]) if a.size == b.size)
            same_length = all(a.size == b.size for a, b in zip(outputs, rows[-1][2]))
            print(f"batch {batch_size} vs one at a time, first {len(single_texts)} utterances: same lengths "
                  f"{same_length}, largest difference {worst:.2e} of the peak")
        if args.device.startswith("cuda"):
            print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
