"""Time the stacked 1x1 convs in the two activation layouts, forward + backward.

batch-major: x (batch, K, C, T) contiguous, `torch.matmul(W (K, O, C), x)`:
(batch x K) small GEMMs with a leading dimension of T frames (7999 for a 4 s
crop: cuBLAS picks unaligned kernels), the weight expanded over the batch and
its gradient summed over it afterwards.
model-major: x stored (K, C, batch, T), `torch.matmul(W, x.view(K, C, batch x T))`:
K GEMMs with a leading dimension of batch x T (aligned when batch is even).

    python bench/finetune/pointwise_layout.py --device cuda [--sizes medium] [--k 7] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

# ConvTasNet's sizes and layout (workflow_scripts/model/convtasnet.py), here so that the bench needs torch alone
SIZES = {"tiny": (8, 32), "small": (16, 64), "medium": (32, 128), "large": (64, 256)}
N_FILTERS, BLOCKS = 512, 14


def _shapes(size: str) -> list[tuple[str, int, int, int]]:
    """(name, out channels, in channels, launches per step) of a ConvTasNet's 1x1 convs."""
    b, h = SIZES[size]
    return [("bottleneck", b, N_FILTERS, 1), ("block in", h, b, BLOCKS), ("residual", b, h, BLOCKS - 1),
            ("skip (one conv over the blocks)", b, BLOCKS * h, 1), ("mask", N_FILTERS, b, 1)]


def _time(fn, repeats: int) -> float:
    """GPU time of one call: `repeats` calls captured in one CUDA graph (no launch cost), replayed."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(repeats):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(3):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / (3 * repeats)


def _one_conv(weight, x, grad, repeats: int) -> tuple[float, float]:
    """GPU ms of the batched 1x1 conv weight @ x: forward + backward, and forward alone."""
    def both():
        torch.autograd.grad(torch.matmul(weight, x), (weight, x), grad)

    def forward():
        torch.matmul(weight.detach(), x.detach())

    return _time(both, repeats), _time(forward, repeats)


def run(size: str, num_models: int, batch: int, frames: int, device, repeats: int) -> list[dict]:
    rows = []
    for name, out_ch, in_ch, launches in _shapes(size):
        weight = torch.randn(num_models, out_ch, in_ch, device=device, requires_grad=True)
        layouts = {  # input and output gradient of each layout
            "batch_major": (torch.randn(batch, num_models, in_ch, frames, device=device, requires_grad=True),
                            torch.randn(batch, num_models, out_ch, frames, device=device)),
            "model_major": (torch.randn(num_models, in_ch, batch * frames, device=device, requires_grad=True),
                            torch.randn(num_models, out_ch, batch * frames, device=device)),
        }
        row = {"size": size, "K": num_models, "frames": frames, "conv": name, "out": out_ch, "in": in_ch,
               "launches": launches}
        for layout, (x, grad) in layouts.items():
            both_ms, forward_ms = _one_conv(weight, x, grad, repeats)
            row[layout], row[f"{layout}_forward"] = round(both_ms, 4), round(forward_ms, 4)
        row["ratio"] = round(row["model_major"] / row["batch_major"], 3)
        print(row, flush=True)
        rows.append(row)
        layouts = weight = None
        torch.cuda.empty_cache()
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small", "medium"], choices=sorted(SIZES))
    parser.add_argument("--k", type=int, nargs="+", default=[7])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, nargs="+", default=[7999],
                        help="frames per crop (7999: a 4 s crop at 16 kHz, L=16)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--dry-run", action="store_true", help="print the plan and what this machine lacks; run nothing")
    args = parser.parse_args(argv)
    if args.dry_run:  # torch alone here, not common.dry_run
        ready = torch.device(args.device).type != "cuda" or torch.cuda.is_available()
        print(f"dry run: nothing is timed\nsizes: {' '.join(args.sizes)}\nK: {args.k}\nframes: {args.frames}\n"
              f"batch: {args.batch}\nrepeats: {args.repeats}\nout: {args.out or 'none'}\nready: "
              + ("yes" if ready else f"no (--device {args.device}: CUDA is not available here)"))
        return
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    rows = []
    for size in args.sizes:
        for k in args.k:
            for frames in args.frames:
                rows += run(size, k, args.batch, frames, torch.device(args.device), args.repeats)
    summary = {}
    for row in rows:
        key = f"{row['size']} K{row['K']} T{row['frames']}"
        total = summary.setdefault(key, {"batch_major": 0.0, "model_major": 0.0})
        for layout in total:
            total[layout] += row[layout] * row["launches"]
    for key, total in summary.items():
        print(f"{key}: 1x1 convs fwd+bwd per step {total['batch_major']:.2f} ms batch-major, "
              f"{total['model_major']:.2f} ms model-major ({total['model_major'] / total['batch_major']:.3f})")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "pointwise_layout.json").write_text(json.dumps({"rows": rows, "per_step": summary}, indent=1))


if __name__ == "__main__":
    main()
