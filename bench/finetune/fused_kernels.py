"""Stacked fine-tuning with the fused Triton kernels against the eager stacked step, on one GPU.

    python bench/finetune/fused_kernels.py --device cuda --out OUT \
        [--runs tiny:7 tiny:16 ...] [--fused-only tiny:48 ...] [--graph small:7 ...] [--target-s 2]

In one process, against each other: the one-at-a-time baseline (common.PlainTrainer), the eager
stacked step and the fused stacked step (`StackedConvTasNet(fused=True)`: model/fused_gln.py,
fused_mask.py, fused_skip.py) at the same K, TF32, batch 8 x 4 s, crops on the device; peak memory
of each, and fused-only runs at larger K. `--graph`: fused steps as a CUDA graph (the workflow's
stacked step); `--unaligned`: fused steps with unpadded rows of frames (frame_align 1). Checks
first: the op alone on a realistic tensor (fused float32 and eager float32 against float64; time
and bytes per call) and one whole step (losses and gradients of fused and eager float32 stacks
against a float64 stack, same weights and batch). Section tune: tile shapes of the element-wise
kernels (fused_gln.FORWARD_TILE and BACKWARD_TILE patched in for the run). Section profile:
torch.profiler over warmed fused steps, CUDA time per kernel and per launching op with an
estimated rate (OUT/profile.md). Data: the demo-world speaker of common.world_data. Writes
OUT/fused_kernels.json and prints a Markdown summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.finetune.common import (  # noqa: E402
    SIZES,
    WORLD_DIR,
    PlainTrainer,
    StackedTrainer,
    bench_recipe,
    default_out,
    dry_run,
    free_memory,
    peak_gib,
    run_info,
    sync,
    timed,
    world_data,
)
from workflow_scripts.model import fused_gln  # noqa: E402
from workflow_scripts.model.convtasnet import MODEL_SIZES, build_model  # noqa: E402
from workflow_scripts.model.fused_gln import fused_available, prelu_gln  # noqa: E402
from workflow_scripts.model.stacked import StackedConvTasNet  # noqa: E402
from workflow_scripts.training.stacked_data import DeviceCropMixer  # noqa: E402
from workflow_scripts.training.stacked_loop import precision_mode  # noqa: E402

FRAMES = 7999  # 4 s at 16 kHz, kernel 16, stride 8
BATCH, CROP_S = 8, 4.0


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
        row = {"shape": list(h.shape), "MB_per_tensor": h.numel() * 4 / 1e6,
               "tiles": {"forward": fused_gln.FORWARD_TILE, "backward": fused_gln.BACKWARD_TILE}}

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
        free_memory()
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

        times.append(1000 * timed(call, device, warmup=2, target_s=0.3))
    return times[0], times[1]


def _op_inputs(device, size, k):
    channels = MODEL_SIZES[size][1]
    gen = torch.Generator(device=device).manual_seed(0)
    shape = (BATCH, k, channels, FRAMES)
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
        fused_gln.FORWARD_TILE = fused_gln.BACKWARD_TILE = tile
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
    fused_gln.FORWARD_TILE, fused_gln.BACKWARD_TILE = tuple(chosen["forward"]), tuple(chosen["backward"])
    result["chosen"] = chosen
    print(f"chosen tiles: {chosen}", flush=True)
    del inputs
    free_memory()
    return result


def check_section(speech, noises, device, configs) -> dict:
    """One step's losses and gradients: fused and eager float32 (no TF32)
    against a float64 stack, same weights and batch."""
    result = {}
    for size, k in configs:
        models = [build_model(size) for _ in range(k)]
        recipes = [bench_recipe(BATCH, CROP_S, seed=i) for i in range(k)]
        mixer = DeviceCropMixer([speech] * k, [noises] * k, recipes, device, seed=0)
        mixtures, cleans = mixer.draw()
        runs = {}
        with precision_mode("fp32"):
            for name, dtype, fused in (("float64", torch.float64, False), ("eager", torch.float32, False),
                                       ("fused", torch.float32, True)):
                stack = StackedConvTasNet.from_models(models, device, dtype, fused=fused)
                losses = stack.losses(mixtures.to(dtype), cleans.to(dtype))
                stack.backward(losses.sum())
                runs[name] = (losses.detach().double(), stack.grad_flat.double())
                del stack
                free_memory()
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
        free_memory()
    return result


def baseline_section(speech, noises, device, sizes, target_s) -> dict:
    result = {}
    for size in sizes:
        plain = PlainTrainer(build_model(size), speech, noises, device, bench_recipe(BATCH, CROP_S))
        result[size] = {"ms_per_step": 1000 * timed(plain.step, device, warmup=5, target_s=target_s),
                        "peak_gib": peak_gib(device)}
        print(f"baseline {size}: {result[size]}", flush=True)
        del plain
        free_memory()
    return result


def _numel(shape) -> int:
    if shape and isinstance(shape[0], (list, tuple)):  # a tensor list (cat's input)
        return sum(_numel(s) for s in shape)
    count = 1
    for d in shape:
        count *= d
    return count


def _op_bytes(name: str, shapes) -> int:
    """Bytes an op moves at least, estimated from its input shapes (float32):
    inputs read once, an output as large as the largest input (a matrix
    product's own output size; cat's output the size of its inputs)."""
    shapes = [s for s in shapes if isinstance(s, (list, tuple)) and len(s) > 0]
    if not shapes:
        return 0
    sizes = [_numel(s) for s in shapes]
    if name in ("aten::bmm", "aten::mm", "aten::baddbmm", "aten::addmm") and len(shapes) >= 2:
        a, b = shapes[-2], shapes[-1]
        out = _numel(a[:-1]) * b[-1]
        return 4 * (_numel(a) + _numel(b) + out)
    if name == "aten::cat":
        return 4 * 2 * sum(sizes)
    return 4 * (sum(sizes) + max(sizes))


def profile_section(speech, noises, device, configs, out_dir, steps=2) -> dict:
    """torch.profiler over `steps` warmed fused TF32 steps: CUDA time per kernel
    (share of the step's kernel time, launches) and per launching op with its input
    shapes (rate at `_op_bytes`)."""
    from torch.profiler import ProfilerActivity, profile

    result, lines = {}, []
    for size, k in configs:
        key = f"{size} K{k} fused"
        models = [build_model(size) for _ in range(k)]
        free_memory()
        recipes = [bench_recipe(BATCH, CROP_S, seed=i) for i in range(k)]
        with StackedTrainer(models, speech, noises, device, recipes, "tf32", cuda_graph=False) as trainer:
            for _ in range(3):
                trainer.step()
            sync(device)
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as prof:
                for _ in range(steps):
                    trainer.step()
                sync(device)
        row = _profile_tables(prof, steps)
        result[key] = row
        lines.append(f"# {key}: kernel time {row['kernel_ms_per_step']:.2f} ms/step, "
                     f"{row['launches_per_step']:.0f} launches/step")
        lines.append("| kernel | ms/step | share | launches/step |")
        lines.append("|---|---|---|---|")
        for r in row["kernels"][:25]:
            lines.append(f"| {r['name'][:90]} | {r['ms']:.3f} | {100 * r['share']:.1f}% | {r['launches']:g} |")
        lines.append("| op (input shapes) | ms/step | share | GB/s est. |")
        lines.append("|---|---|---|---|")
        for r in row["ops"][:25]:
            lines.append(f"| {r['op']} {r['shapes'][:110]} | {r['ms']:.3f} | {100 * r['share']:.1f}% | "
                         f"{r['GBps']:.0f} |")
        print("\n".join(lines[-(len(row["kernels"][:25]) + len(row["ops"][:25]) + 5):]), flush=True)
        trainer = models = prof = None
        free_memory()
    (out_dir / "profile.md").write_text("\n".join(lines) + "\n")
    return result


def _profile_tables(prof, steps) -> dict:
    kernels = {}
    for e in prof.events():
        if getattr(e, "device_type", None) != torch.autograd.DeviceType.CUDA:
            continue
        entry = kernels.setdefault(e.name, [0.0, 0])
        entry[0] += e.time_range.elapsed_us()
        entry[1] += 1
    total_us = sum(v[0] for v in kernels.values())
    kernel_rows = []
    for name, (us, count) in sorted(kernels.items(), key=lambda kv: -kv[1][0]):
        kernel_rows.append({"name": name, "ms": us / 1000 / steps, "share": us / total_us, "launches": count / steps})
    ops = {}
    for e in prof.events():
        if getattr(e, "device_type", None) != torch.autograd.DeviceType.CPU or not e.kernels:
            continue
        key = (e.name, str(e.input_shapes))
        entry = ops.setdefault(key, [0.0, 0])
        entry[0] += sum(kern.duration for kern in e.kernels)
        entry[1] += _op_bytes(e.name, e.input_shapes)
    op_rows = [{"op": name, "shapes": shapes, "ms": us / 1000 / steps, "share": us / total_us,
                "GBps": nbytes / (us / 1e6) / 1e9 if us else 0.0}
               for (name, shapes), (us, nbytes) in sorted(ops.items(), key=lambda kv: -kv[1][0])]
    return {"kernel_ms_per_step": total_us / 1000 / steps,
            "launches_per_step": sum(v[1] for v in kernels.values()) / steps,
            "kernels": kernel_rows[:40], "ops": op_rows[:40]}


def stacked_run(size, k, speech, noises, device, fused, target_s, cuda_graph=False, frame_align=None) -> dict:
    """ms per step of a TF32 stack of K models, eager or fused (as a CUDA graph with `cuda_graph`);
    `frame_align`: the fused stack's (default: what fused=True sets on a GPU, model.stacked.FRAME_ALIGN)."""
    models = [build_model(size) for _ in range(k)]
    free_memory()
    recipes = [bench_recipe(BATCH, CROP_S, lr=1e-3 * (1 + i % 3), seed=i) for i in range(k)]
    try:
        with StackedTrainer(models, speech, noises, device, recipes, "tf32", fused, cuda_graph) as trainer:
            if fused and frame_align is not None:
                trainer.stack.frame_align = frame_align
            seconds = timed(trainer.step, device, warmup=7 if cuda_graph else 3, target_s=target_s)
        row = {"ms_per_step": 1000 * seconds, "peak_gib": peak_gib(device), "fused": trainer.stack.fused}
    except torch.OutOfMemoryError:
        row = {"error": "out of memory"}
    except Exception as exc:  # noqa: BLE001 - a run that fails is recorded, the others still run
        row = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    trainer = models = None
    free_memory()
    return row


def stacked_section(speech, noises, device, runs, fused_only, target_s, deadline, graphs=(), unaligned=()) -> dict:
    """Eager and fused steps at each size:K of `runs`, fused only at those of `fused_only`; fused steps as a
    CUDA graph at those of `graphs` (keyed "... fused graph"), and with unpadded rows of frames at those of
    `unaligned` (frame_align 1, keyed "... fused unaligned")."""
    result = {}
    for size, k in graphs:
        key = f"{size} K{k} fused graph"
        result[key] = stacked_run(size, k, speech, noises, device, True, target_s, cuda_graph=True)
        print(f"{key}: {result[key]}", flush=True)
    for size, k in unaligned:
        key = f"{size} K{k} fused unaligned"
        result[key] = stacked_run(size, k, speech, noises, device, True, target_s, frame_align=1)
        print(f"{key}: {result[key]}", flush=True)
    for size, k in runs + fused_only:
        for fused in (False, True) if (size, k) in runs else (True,):
            key = f"{size} K{k} {'fused' if fused else 'eager'}"
            if time.time() > deadline:
                result[key] = {"error": "skipped: time budget"}
                continue
            result[key] = stacked_run(size, k, speech, noises, device, fused, target_s)
            print(f"{key}: {result[key]}", flush=True)
    return result


def summarize(results: dict) -> str:
    lines = [("| size | K | baseline ms/step | eager ms/step (per model) | fused ms/step (per model) "
              "| fused / eager | x baseline eager / fused | peak GiB eager / fused |"),
             "|---|---|---|---|---|---|---|---|"]
    stacked = results.get("stacked", {})
    baseline = results.get("baseline", {})
    keys = sorted({tuple(key.split()[:2]) for key in stacked if key.endswith((" eager", " fused"))},
                  key=lambda sk: (SIZES.index(sk[0]), int(sk[1][1:])))
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
        peaks = " / ".join(f"{row['peak_gib']:.1f}" if row.get("peak_gib") is not None else "-" for row in (eager, fused))
        lines.append(f"| {size} | {k} | {base:.1f} | {cell(eager)} | {cell(fused)} | {ratio} | "
                     f"{speedup(eager)} / {speedup(fused)} | {peaks} |" if base else
                     f"| {size} | {k} | - | {cell(eager)} | {cell(fused)} | {ratio} | - | {peaks} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    global CROP_S
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/runs/<UTC date>_<machine>/")
    parser.add_argument("--world-dir", type=Path, default=WORLD_DIR, help="the demo-world speaker (made if absent)")
    parser.add_argument("--runs", nargs="*", type=_config, default=[_config(c) for c in (
        "tiny:7", "tiny:16", "tiny:32", "small:7", "small:16", "medium:7", "medium:16")],
        help="size:K run eager and fused")
    parser.add_argument("--fused-only", nargs="*", type=_config,
                        default=[_config(c) for c in ("tiny:48", "small:24", "medium:24")])
    parser.add_argument("--graph", nargs="*", type=_config, default=[], help="size:K fused steps as a CUDA graph")
    parser.add_argument("--unaligned", nargs="*", type=_config, default=[],
                        help="size:K fused steps also with unpadded rows of frames (frame_align 1)")
    parser.add_argument("--check", nargs="*", type=_config, default=[_config(c) for c in ("tiny:7", "medium:7")])
    parser.add_argument("--op", nargs="*", type=_config, default=[_config(c) for c in ("tiny:32", "medium:16")])
    parser.add_argument("--tiles", nargs="*", type=_tile, default=[],
                        help="elements:max_block_t:warps tile shapes to try (section tune)")
    parser.add_argument("--sections", default="check,op,baseline,stacked")
    parser.add_argument("--profile", nargs="*", type=_config, default=[_config(c) for c in (
        "medium:7", "small:7", "tiny:32")], help="size:K fused steps to profile (section profile)")
    parser.add_argument("--target-s", type=float, default=2.0)
    parser.add_argument("--budget-s", type=float, default=330.0, help="stop starting stacked runs after this")
    parser.add_argument("--crop-seconds", type=float, default=CROP_S, help="shorter for a CPU smoke run")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and what this machine lacks; run nothing")
    args = parser.parse_args(argv)
    CROP_S = args.crop_seconds
    if args.dry_run:
        def names(configs):
            return " ".join(f"{size}:{k}" for size, k in configs) or "none"
        dry_run({"sections": args.sections, "eager and fused": names(args.runs), "fused only": names(args.fused_only),
                 "CUDA graph": names(args.graph), "checks": names(args.check), "op": names(args.op),
                 "recipe": f"batch {BATCH} x {CROP_S:g} s crops", "out": args.out or "bench/runs/<UTC date>_<machine>/"},
                args.device, args.world_dir, needs_triton=True)
        return
    started = time.time()
    device = torch.device(args.device)
    out_dir = args.out or default_out(device)
    out_dir.mkdir(parents=True, exist_ok=True)
    speech, noises = world_data(args.world_dir)
    results = {**run_info(device), "fused_available": fused_available(device),
               "data": f"demo-world speaker ({len(speech)} utterances, {len(noises)} noises, {args.world_dir})",
               "recipe": f"batch {BATCH} x {CROP_S:g} s crops, TF32 (checks: fp32), crops on the device"}
    sections = args.sections.split(",")
    json_path = out_dir / "fused_kernels.json"

    def section(name, fn):
        if name not in sections:
            return
        begin = time.perf_counter()
        try:
            results[name] = fn()
        except Exception as exc:  # noqa: BLE001 - a section that fails is recorded, the others still run
            results[name] = {"error": f"{type(exc).__name__}: {exc}"[:800]}
        print(f"[{name}: {time.perf_counter() - begin:.0f} s]", flush=True)
        json_path.write_text(json.dumps(results, indent=1, default=float))

    section("tune", lambda: tune_section(device, args.op, args.tiles))
    section("check", lambda: check_section(speech, noises, device, args.check))
    section("profile", lambda: profile_section(speech, noises, device, args.profile, out_dir))
    section("op", lambda: op_section(device, args.op))
    sizes = [s for s in SIZES if any(size == s for size, _ in args.runs)]
    section("baseline", lambda: baseline_section(speech, noises, device, sizes, args.target_s))
    section("stacked", lambda: stacked_section(speech, noises, device, args.runs, args.fused_only, args.target_s,
                                               started + args.budget_s, args.graph, args.unaligned))
    results["tiles"] = {"forward": fused_gln.FORWARD_TILE, "backward": fused_gln.BACKWARD_TILE}
    json_path.write_text(json.dumps(results, indent=1, default=float))
    print(f"\n{results['device']}, torch {results['torch']}, triton {results['triton']}, {results['date']}, "
          f"tiles {results['tiles']}")
    print(summarize(results))


if __name__ == "__main__":
    main()
