"""Stacked fine-tuning with the fused bias + PReLU + gLN kernels, on one GPU.

    python bench/fused_gln_bench.py --device cuda --data .bench-stacked/demo.npz --out OUT \
        [--runs tiny:7 tiny:16 ...] [--fused-only tiny:48 ...] [--target-s 2]

In one process, against each other: the one-at-a-time baseline
(finetune_throughput's PlainTrainer, as its baseline section), the eager
stacked step and the fused stacked step (`StackedConvTasNet(fused=True)`,
workflow_scripts/fused_gln.py) at the same K, TF32, batch 8 x 4 s, crops on
the device; peak memory of each, and fused-only runs at larger K. Checks
first: the op alone on a realistic tensor (fused float32 and eager float32
against float64; time and bytes per call) and one whole step (losses and
gradients of fused and eager float32 stacks against a float64 stack, same
weights and batch). Writes OUT/fused_results.json and prints a Markdown
summary.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import finetune_throughput as ft

from workflow_scripts import fused_gln
from workflow_scripts.convtasnet import MODEL_SIZES, build_model
from workflow_scripts.fused_gln import fused_available, prelu_gln
from workflow_scripts.stacked import DeviceCropMixer, StackedConvTasNet, precision_mode

FRAMES = 7999  # 4 s at 16 kHz, kernel 16, stride 8


def _config(text: str) -> tuple[str, int]:
    size, k = text.split(":")
    return size, int(k)


def _tile(text: str) -> tuple[int, int, int]:
    elements, block_t, warps = (int(v) for v in text.split(":"))
    return elements, block_t, warps


def _rel(a, b) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))


def op_section(device, configs) -> dict:
    """prelu_gln alone on (8, K, H, frames): accuracy against float64, ms per
    call forward and forward + backward, fused against eager."""
    result = {}
    for size, k in configs:
        h, params, dy = _op_inputs(device, size, k)
        h = h * 0.7 + 0.2
        row = {"shape": list(h.shape), "MB_per_tensor": h.numel() * 4 / 1e6, "tiles": dict(fused_gln.TILES)}

        def run(impl, dtype, inputs=(h, *params), dy=dy):
            leaves = [t.to(dtype).clone().requires_grad_() for t in inputs]
            out = prelu_gln(*leaves, impl=impl)
            out.backward(dy.to(dtype))
            return out, [t.grad for t in leaves]

        exact, exact_grads = run("reference", torch.float64)
        for impl in ("triton", "reference"):
            out, grads = run(impl, torch.float32)
            row[f"{impl}_vs_float64"] = {"out": _rel(out, exact), **{
                name: _rel(g, e) for name, g, e in zip(("h", "bias", "slope", "gamma", "beta"), grads, exact_grads)}}
        del exact, exact_grads, out, grads
        for impl in ("triton", "reference"):
            row[f"{impl}_fwd_ms"], row[f"{impl}_fwd_bwd_ms"] = _op_ms(device, impl, h, params, dy)
        tensor_bytes = h.numel() * 4
        row["fused_fwd_GBps_at_3_passes"] = 3 * tensor_bytes / row["triton_fwd_ms"] / 1e6
        row["fused_bwd_GBps_at_5_passes"] = 5 * tensor_bytes / (row["triton_fwd_bwd_ms"] - row["triton_fwd_ms"]) / 1e6
        result[f"{size} K{k}"] = row
        print(f"op {size} K{k}: {json.dumps(row)}", flush=True)
        del h, dy, params
        ft.free_memory()
    return result


def _op_ms(device, impl, h, params, dy) -> tuple[float, float]:
    """ms per call of prelu_gln forward, and forward + backward (gradients
    written, not accumulated)."""
    times = []
    for backward in (False, True):
        leaves = [t.clone().requires_grad_(backward) for t in (h, *params)]

        def call(leaves=leaves, backward=backward):
            out = prelu_gln(*leaves, impl=impl)
            if backward:
                for t in leaves:
                    t.grad = None
                out.backward(dy)

        times.append(1000 * ft.timed(call, device, warmup=2, target_s=0.3))
    return times[0], times[1]


def _op_inputs(device, size, k):
    channels = MODEL_SIZES[size][1]
    gen = torch.Generator(device=device).manual_seed(0)
    shape = (ft.BATCH, k, channels, FRAMES)
    h = torch.randn(shape, device=device, generator=gen)
    params = [torch.randn(k, channels, device=device, generator=gen) * 0.1, torch.full((k, 1), 0.25, device=device),
              1 + 0.1 * torch.randn(k, channels, device=device, generator=gen),
              0.1 * torch.randn(k, channels, device=device, generator=gen)]
    return h, params, torch.randn(shape, device=device, generator=gen)


def tune_section(device, configs, tiles) -> dict:
    """Tile shapes (elements, largest BLOCK_T, warps) of the fused kernels: ms
    forward and backward summed over the op shapes; the fastest of each pass
    is kept for the sections after this one."""
    result = {"ms": {}}
    inputs = [_op_inputs(device, size, k) for size, k in configs]
    for tile in tiles:
        fused_gln.TILES = {"forward": tile, "backward": tile}
        fwd = bwd = 0.0
        try:
            for h, params, dy in inputs:
                f, fb = _op_ms(device, "triton", h, params, dy)
                fwd, bwd = fwd + f, bwd + fb - f
        except Exception as exc:  # noqa: BLE001 - a tile that fails is recorded
            result["ms"][str(tile)] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            continue
        result["ms"][str(tile)] = {"forward": fwd, "backward": bwd}
        print(f"tile {tile}: forward {fwd:.3f} ms, backward {bwd:.3f} ms", flush=True)
    timed_tiles = {t: v for t, v in zip(tiles, result["ms"].values()) if "forward" in v}
    chosen = {p: list(min(timed_tiles, key=lambda t, p=p: timed_tiles[t][p])) for p in ("forward", "backward")}
    fused_gln.TILES = {p: tuple(t) for p, t in chosen.items()}
    result["chosen"] = chosen
    print(f"chosen tiles: {chosen}", flush=True)
    del inputs
    ft.free_memory()
    return result


def check_section(speakers, device, configs) -> dict:
    """One step's losses and gradients: fused and eager float32 (no TF32)
    against a float64 stack, same weights and batch."""
    result = {}
    for size, k in configs:
        models = [build_model(size) for _ in range(k)]
        recipes = [ft.recipe(seed=i) for i in range(k)]
        data = [speakers[i % len(speakers)] for i in range(k)]
        mixer = DeviceCropMixer([d[0] for d in data], [d[1] for d in data], recipes, device, seed=0)
        mixtures, cleans = mixer.draw()
        runs = {}
        with precision_mode("fp32"):
            for name, dtype, fused in (("float64", torch.float64, False), ("eager", torch.float32, False),
                                       ("fused", torch.float32, True)):
                stack = StackedConvTasNet.from_models(models, device, dtype, fused=fused)
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="grad and param do not obey")
                    losses = stack.losses(mixtures.to(dtype), cleans.to(dtype))
                    losses.sum().backward()
                runs[name] = (losses.detach().double(), stack.grad_flat.double())
                del stack
                ft.free_memory()
        row = {}
        for a, b in (("fused", "eager"), ("fused", "float64"), ("eager", "float64")):
            (loss_a, grad_a), (loss_b, grad_b) = runs[a], runs[b]
            row[f"{a}_vs_{b}"] = {
                "loss_max_rel": float(((loss_a - loss_b).abs() / loss_b.abs()).max()),
                "grad_max_rel_norm": float(((grad_a - grad_b).norm(dim=1) / grad_b.norm(dim=1)).max()),
            }
        result[f"{size} K{k}"] = row
        print(f"check {size} K{k}: {json.dumps(row)}", flush=True)
        del models, mixer, runs
        ft.free_memory()
    return result


def baseline_section(speakers, device, sizes, target_s) -> dict:
    result = {}
    for size in sizes:
        plain = ft.PlainTrainer(build_model(size), *speakers[0], device)
        result[size] = {"ms_per_step": 1000 * ft.timed(plain.step, device, warmup=5, target_s=target_s),
                        "peak_gib": ft.peak_gib(device)}
        print(f"baseline {size}: {result[size]}", flush=True)
        del plain
        ft.free_memory()
    return result


def stacked_run(size, k, speakers, device, fused, target_s, cuda_graph=False) -> dict:
    models = [build_model(size) for _ in range(k)]
    ft.free_memory()
    try:
        trainer = ft.StackedTrainer(models, speakers, device, "tf32", cuda_graph)
        trainer.stack.fused = fused
        with trainer:
            seconds = ft.timed(trainer.step, device, warmup=4 if cuda_graph else 3, target_s=target_s)
        row = {"ms_per_step": 1000 * seconds, "peak_gib": ft.peak_gib(device)}
    except torch.OutOfMemoryError:
        row = {"error": "out of memory"}
    except Exception as exc:  # noqa: BLE001 - a run that fails is recorded, the others still run
        row = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    trainer = models = None
    ft.free_memory()
    return row


def stacked_section(speakers, device, runs, fused_only, target_s, deadline, graphs=()) -> dict:
    result = {}
    for size, k in graphs:  # the fused step captured as a CUDA graph
        key = f"{size} K{k} fused graph"
        result[key] = stacked_run(size, k, speakers, device, True, target_s, cuda_graph=True)
        print(f"{key}: {result[key]}", flush=True)
    for size, k in runs + fused_only:
        for fused in (False, True) if (size, k) in runs else (True,):
            key = f"{size} K{k} {'fused' if fused else 'eager'}"
            if time.time() > deadline:
                result[key] = {"error": "skipped: time budget"}
                continue
            result[key] = stacked_run(size, k, speakers, device, fused, target_s)
            print(f"{key}: {result[key]}", flush=True)
    return result


def summarize(results: dict) -> str:
    lines = [("| size | K | baseline ms/step | eager ms/step (per model) | fused ms/step (per model) "
              "| fused / eager | x baseline eager / fused | peak GiB eager / fused |"),
             "|---|---|---|---|---|---|---|---|"]
    stacked = results.get("stacked", {})
    baseline = results.get("baseline", {})
    keys = sorted({tuple(key.split()[:2]) for key in stacked if not key.endswith("graph")}, key=lambda sk: (ft.SIZES.index(sk[0]), int(sk[1][1:])))
    for size, kk in keys:
        k = int(kk[1:])
        eager, fused = stacked.get(f"{size} {kk} eager", {}), stacked.get(f"{size} {kk} fused", {})
        base = baseline.get(size, {}).get("ms_per_step")

        def cell(row, k=k):
            return f"{row['ms_per_step']:.1f} ({row['ms_per_step'] / k:.2f})" if "ms_per_step" in row else (
                row.get("error", "not run"))

        def speedup(row, k=k, base=base):
            return f"{base * k / row['ms_per_step']:.1f}" if base and "ms_per_step" in row else "-"

        ratio = (f"{fused['ms_per_step'] / eager['ms_per_step']:.3f}"
                 if "ms_per_step" in eager and "ms_per_step" in fused else "-")
        peaks = " / ".join(f"{row['peak_gib']:.1f}" if "peak_gib" in row else "-" for row in (eager, fused))
        lines.append(f"| {size} | {k} | {base:.1f} | {cell(eager)} | {cell(fused)} | {ratio} | "
                     f"{speedup(eager)} / {speedup(fused)} | {peaks} |" if base else
                     f"| {size} | {k} | - | {cell(eager)} | {cell(fused)} | {ratio} | - | {peaks} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", required=True)
    parser.add_argument("--data", default=None, help="npz from finetune_throughput.py pack (default: synthetic)")
    parser.add_argument("--runs", nargs="*", type=_config, default=[_config(c) for c in (
        "tiny:7", "tiny:16", "tiny:32", "small:7", "small:16", "medium:7", "medium:16")],
        help="size:K run eager and fused")
    parser.add_argument("--fused-only", nargs="*", type=_config,
                        default=[_config(c) for c in ("tiny:48", "small:24", "medium:24")])
    parser.add_argument("--graph", nargs="*", type=_config, default=[], help="size:K fused steps as a CUDA graph")
    parser.add_argument("--check", nargs="*", type=_config, default=[_config(c) for c in ("tiny:7", "medium:7")])
    parser.add_argument("--op", nargs="*", type=_config, default=[_config(c) for c in ("tiny:32", "medium:16")])
    parser.add_argument("--tiles", nargs="*", type=_tile, default=[],
                        help="elements:max_block_t:warps tile shapes to try (section tune)")
    parser.add_argument("--sections", default="check,op,baseline,stacked")
    parser.add_argument("--target-s", type=float, default=2.0)
    parser.add_argument("--budget-s", type=float, default=330.0, help="stop starting stacked runs after this")
    parser.add_argument("--crop-seconds", type=float, default=ft.CROP_S, help="shorter for a CPU smoke run")
    args = parser.parse_args(argv)
    ft.CROP_S = args.crop_seconds
    started = time.time()
    device = torch.device(args.device)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    speakers, _, data_note = ft.load_data(args.data)
    results = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "fused_available": fused_available(device),
        "data": data_note,
        "command": " ".join(sys.argv),
        "recipe": f"batch {ft.BATCH} x {ft.CROP_S:g} s crops, TF32 (checks: fp32), crops on the device",
    }
    try:
        import triton

        results["triton"] = triton.__version__
    except ImportError:
        results["triton"] = None
    sections = args.sections.split(",")

    def section(name, fn):
        if name not in sections:
            return
        begin = time.perf_counter()
        try:
            results[name] = fn()
        except Exception as exc:  # noqa: BLE001 - a section that fails is recorded, the others still run
            results[name] = {"error": f"{type(exc).__name__}: {exc}"[:800]}
        print(f"[{name}: {time.perf_counter() - begin:.0f} s]", flush=True)
        (out_dir / "fused_results.json").write_text(json.dumps(results, indent=1, default=float))

    section("tune", lambda: tune_section(device, args.op, args.tiles))
    section("check", lambda: check_section(speakers, device, args.check))
    section("op", lambda: op_section(device, args.op))
    sizes = [s for s in ft.SIZES if any(size == s for size, _ in args.runs)]
    section("baseline", lambda: baseline_section(speakers, device, sizes, args.target_s))
    section("stacked", lambda: stacked_section(speakers, device, args.runs, args.fused_only, args.target_s,
                                               started + args.budget_s, args.graph))
    results["tiles"] = dict(fused_gln.TILES)
    (out_dir / "fused_results.json").write_text(json.dumps(results, indent=1, default=float))
    print(f"\n{results['device']}, torch {results['torch']}, triton {results['triton']}, {results['date']}, "
          f"tiles {results['tiles']}")
    print(summarize(results))


if __name__ == "__main__":
    main()
