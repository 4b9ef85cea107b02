"""Tiles of the fused mask + decoder kernels (fused_mask.mask_decode) against
sigmoid_mask + a matrix product, forward + backward, one stack's shapes. Each
tile is patched in for the run (fused_mask.DECODE_FORWARD_TILE and
DECODE_BACKWARD_TILE).

    python bench/finetune/decode_tiles.py --device cuda [--k 7] [--channels 512] [--out DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.finetune.common import dry_run  # noqa: E402
from workflow_scripts.model import fused_mask  # noqa: E402


def _ms(fn, repeats=20) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--k", type=int, default=7)
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--forward-tiles", nargs="+", default=["64,128,4", "32,256,4", "32,128,4", "16,128,4",
                                                                "32,64,4", "16,256,4"],
                        help="BLOCK_C,BLOCK_T,warps of decode_fwd")
    parser.add_argument("--backward-tiles", nargs="+", default=["32,128,4", "64,128,8", "64,64,4", "128,64,8",
                                                                 "32,64,4", "64,32,4", "128,32,4", "128,64,4"],
                        help="BLOCK_C,BLOCK_T,warps of decode_bwd")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and what this machine lacks; run nothing")
    args = parser.parse_args(argv)
    try:
        forward_tiles = [tuple(int(v) for v in t.split(",")) for t in args.forward_tiles]
        backward_tiles = [tuple(int(v) for v in t.split(",")) for t in args.backward_tiles]
    except ValueError:
        parser.error("a tile is BLOCK_C,BLOCK_T,warps: three whole numbers")
    if any(len(t) != 3 for t in forward_tiles + backward_tiles):
        parser.error("a tile is BLOCK_C,BLOCK_T,warps: three whole numbers")
    if args.dry_run:
        dry_run({"shape": (8, args.k, args.channels, 8000), "forward tiles": forward_tiles,
                 "backward tiles": backward_tiles, "out": args.out or "none"}, args.device, needs_triton=True)
        return
    torch.backends.cuda.matmul.allow_tf32 = True
    shape = (8, args.k, args.channels, 8000)
    score, x = (torch.randn(shape, device=args.device, requires_grad=True) for _ in range(2))
    bias = torch.randn(args.k, args.channels, device=args.device, requires_grad=True)
    weight = torch.randn(args.k, args.channels, 16, device=args.device, requires_grad=True)
    dy = torch.randn(8, args.k, 16, 8000, device=args.device)
    leaves = (score, bias, x, weight)

    def step(impl):
        def run():
            out = fused_mask.mask_decode(score, bias, x, weight, impl=impl, frames=7999) if impl else torch.matmul(
                weight.transpose(1, 2), fused_mask.sigmoid_mask(score, bias, x, frames=7999))
            torch.autograd.grad(out, leaves, dy)
        return run

    results = {"shape": shape, "unfused (sigmoid_mask + matmul)": _ms(step(None))}
    print(results, flush=True)
    saved = fused_mask.DECODE_FORWARD_TILE, fused_mask.DECODE_BACKWARD_TILE
    for fwd, bwd in itertools.product(forward_tiles, backward_tiles):
        fused_mask.DECODE_FORWARD_TILE, fused_mask.DECODE_BACKWARD_TILE = fwd, bwd
        try:
            forward_ms = _ms(lambda: fused_mask.mask_decode(score.detach(), bias, x.detach(), weight.detach(),
                                                           impl="triton", frames=7999))
            total_ms = _ms(step("triton"))
        except Exception as exc:  # noqa: BLE001 - a tile that fails is recorded
            results[f"{fwd} {bwd}"] = f"{type(exc).__name__}: {exc}"[:200]
            continue
        results[f"{fwd} {bwd}"] = {"forward_ms": forward_ms, "forward_backward_ms": total_ms}
        print(fwd, bwd, f"forward {forward_ms:.3f} ms, forward+backward {total_ms:.3f} ms", flush=True)
    fused_mask.DECODE_FORWARD_TILE, fused_mask.DECODE_BACKWARD_TILE = saved
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "decode_tiles.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
