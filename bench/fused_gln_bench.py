"""Stacked fine-tuning with the fused bias + PReLU + gLN kernels, on one GPU.

    python bench/fused_gln_bench.py --device cuda --data .bench-stacked/demo.npz --out OUT \
        [--runs tiny:7 tiny:16 ...] [--fused-only tiny:48 ...] [--target-s 2]

In one process, against each other: the one-at-a-time baseline
(finetune_throughput's PlainTrainer, as its baseline section), the eager
stacked step and the fused stacked step (`StackedConvTasNet(fused=True)`,
workflow_scripts/model/fused_gln.py) at the same K, TF32, batch 8 x 4 s, crops on
the device; peak memory of each, and fused-only runs at larger K. Checks
first: the op alone on a realistic tensor (fused float32 and eager float32
against float64; time and bytes per call) and one whole step (losses and
gradients of fused and eager float32 stacks against a float64 stack, same
weights and batch). Section profile: torch.profiler over warmed fused steps,
CUDA time per kernel and per launching op with its achieved rate
(OUT/profile.md). `--variants` runs fused steps with some of
fused_gln.STAGES only ("none": the blocks' chains alone), against each
other in the same run. Writes OUT/fused_results.json and prints a Markdown
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

from workflow_scripts.model import fused_gln

from workflow_scripts.training import stacked
from workflow_scripts.model.convtasnet import MODEL_SIZES, build_model
from workflow_scripts.model.fused_gln import fused_available, prelu_gln
from workflow_scripts.training.stacked import DeviceCropMixer, StackedConvTasNet, precision_mode

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


ALL_STAGES = ("bottleneck", "mask", "depthwise", "skip", "residual", "encoder_grad", "decoder")


def _stages(variant: str) -> set:
    """A fused variant's fused_gln.STAGES: "all", "none" (the blocks' chains
    alone) or stage names joined by "+"."""
    if variant == "all":
        return set(ALL_STAGES)
    return set() if variant == "none" else set(variant.split("+"))


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


def profile_section(speakers, device, configs, variants, out_dir, steps=2) -> dict:
    """torch.profiler over `steps` warmed fused TF32 steps: CUDA time per kernel
    (share of the step's kernel time, launches, and for the fused kernels the
    rate at the bytes they move at least) and per launching op with its input
    shapes (rate at `_op_bytes`)."""
    from torch.profiler import ProfilerActivity, profile

    result, lines = {}, []
    for size, k in configs:
        for variant in variants:
            key = f"{size} K{k} fused:{variant}"
            saved_stages = set(fused_gln.STAGES)
            fused_gln.STAGES = _stages(variant)
            models = [build_model(size) for _ in range(k)]
            ft.free_memory()
            try:
                trainer = ft.StackedTrainer(models, speakers, device, "tf32")
                trainer.stack.fused, trainer.stack.frame_align = True, stacked.FRAME_ALIGN
                with trainer:
                    for _ in range(3):
                        trainer.step()
                    ft.sync(device)
                    fused_gln.TRAFFIC = {}
                    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as prof:
                        for _ in range(steps):
                            trainer.step()
                        ft.sync(device)
                    traffic, fused_gln.TRAFFIC = fused_gln.TRAFFIC, None
            finally:
                fused_gln.STAGES = saved_stages
                fused_gln.TRAFFIC = None
            row = _profile_tables(prof, traffic, steps)
            result[key] = row
            lines.append(f"# {key}: kernel time {row['kernel_ms_per_step']:.2f} ms/step, "
                         f"{row['launches_per_step']:.0f} launches/step")
            lines.append("| kernel | ms/step | share | launches/step | GB/s (fused kernels) |")
            lines.append("|---|---|---|---|---|")
            for r in row["kernels"][:25]:
                rate = f"{r['GBps']:.0f}" if r.get("GBps") else ""
                lines.append(f"| {r['name'][:90]} | {r['ms']:.3f} | {100 * r['share']:.1f}% | {r['launches']:g} | {rate} |")
            lines.append("| op (input shapes) | ms/step | share | GB/s est. |")
            lines.append("|---|---|---|---|")
            for r in row["ops"][:25]:
                lines.append(f"| {r['op']} {r['shapes'][:110]} | {r['ms']:.3f} | {100 * r['share']:.1f}% | "
                             f"{r['GBps']:.0f} |")
            print("\n".join(lines[-(len(row["kernels"][:25]) + len(row["ops"][:25]) + 5):]), flush=True)
            trainer = models = prof = None
            ft.free_memory()
    (out_dir / "profile.md").write_text("\n".join(lines) + "\n")
    return result


def _profile_tables(prof, traffic, steps) -> dict:
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
        row = {"name": name, "ms": us / 1000 / steps, "share": us / total_us, "launches": count / steps}
        for short, nbytes in (traffic or {}).items():
            if name == short or name.startswith(short + "_") or name.endswith(short):
                row["GBps"] = nbytes / (us / 1e6) / 1e9
        kernel_rows.append(row)
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


def stacked_run(size, k, speakers, device, fused, target_s, cuda_graph=False, variant="all",
                grad_into_flat=True, frame_align=None) -> dict:
    """ms per step; `frame_align`: the fused stack's (default stacked.FRAME_ALIGN, what fused=True sets)."""
    models = [build_model(size) for _ in range(k)]
    ft.free_memory()
    saved_stages = set(fused_gln.STAGES)
    fused_gln.STAGES = _stages(variant)
    stacked.GRAD_INTO_FLAT = grad_into_flat
    try:
        trainer = ft.StackedTrainer(models, speakers, device, "tf32", cuda_graph)
        trainer.stack.fused = fused
        trainer.stack.frame_align = (stacked.FRAME_ALIGN if frame_align is None else frame_align) if fused else 1
        with trainer:
            seconds = ft.timed(trainer.step, device, warmup=4 if cuda_graph else 3, target_s=target_s)
        row = {"ms_per_step": 1000 * seconds, "peak_gib": ft.peak_gib(device)}
    except torch.OutOfMemoryError:
        row = {"error": "out of memory"}
    except Exception as exc:  # noqa: BLE001 - a run that fails is recorded, the others still run
        row = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    finally:
        fused_gln.STAGES = saved_stages
        stacked.GRAD_INTO_FLAT = True
    trainer = models = None
    ft.free_memory()
    return row


def stacked_section(speakers, device, runs, fused_only, target_s, deadline, graphs=(), variants=("all",),
                    accumulate=(), unaligned=()) -> dict:
    """Eager and fused steps; each fused variant of `variants` ("all": every
    stage, keyed "fused"; others keyed "fused:VARIANT") right after eager. For
    the size:K of `accumulate`, the fused step (and its graph, where one is
    run) also with the gradients accumulated by loss.backward() into the
    strided views of grad_flat (keyed "... accumulate"), as before
    StackedConvTasNet.backward. For the size:K of `unaligned`, likewise with
    rows of frames not padded (frame_align 1, keyed "... unaligned"), as before
    StackedConvTasNet.frame_align."""
    result = {}
    for size, k in graphs:  # the fused step captured as a CUDA graph
        for into_flat in (True, False) if (size, k) in accumulate else (True,):
            for align in (None, 1) if (size, k) in unaligned and into_flat else (None,):
                key = f"{size} K{k} fused graph" + ("" if into_flat else " accumulate") + (
                    " unaligned" if align == 1 else "")
                result[key] = stacked_run(size, k, speakers, device, True, target_s, cuda_graph=True,
                                          grad_into_flat=into_flat, frame_align=align)
                print(f"{key}: {result[key]}", flush=True)
    for size, k in accumulate:
        key = f"{size} K{k} fused accumulate"
        result[key] = stacked_run(size, k, speakers, device, True, target_s, grad_into_flat=False)
        print(f"{key}: {result[key]}", flush=True)
    for size, k in unaligned:
        key = f"{size} K{k} fused unaligned"
        result[key] = stacked_run(size, k, speakers, device, True, target_s, frame_align=1)
        print(f"{key}: {result[key]}", flush=True)
    for size, k in runs + fused_only:
        todo = [(False, "all")] if (size, k) in runs else []
        todo += [(True, v) for v in variants] if (size, k) in runs else [(True, "all")]
        for fused, variant in todo:
            name = "eager" if not fused else ("fused" if variant == "all" else f"fused:{variant}")
            key = f"{size} K{k} {name}"
            if time.time() > deadline:
                result[key] = {"error": "skipped: time budget"}
                continue
            result[key] = stacked_run(size, k, speakers, device, fused, target_s, variant=variant)
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
    variants = [key for key in stacked if ":" in key.split()[-1] and "ms_per_step" in stacked[key]]
    if variants:
        lines += ["", "| run | ms/step (per model) | / eager | / fused:none | / fused (all) | peak GiB |",
                  "|---|---|---|---|---|---|"]
        for key in variants + [key for key in stacked if key.endswith(" fused") and f"{key}:none" in stacked]:
            row, k = stacked[key], int(key.split()[1][1:])
            prefix = " ".join(key.split()[:2])

            def over(other, row=row):
                other = stacked.get(other, {})
                return f"{row['ms_per_step'] / other['ms_per_step']:.3f}" if "ms_per_step" in other else "-"

            lines.append(f"| {key} | {row['ms_per_step']:.1f} ({row['ms_per_step'] / k:.2f}) | {over(prefix + ' eager')} "
                         f"| {over(prefix + ' fused:none')} | {over(prefix + ' fused')} | {row['peak_gib']:.1f} |")
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
    parser.add_argument("--accumulate", nargs="*", type=_config, default=[],
                        help="size:K fused steps (and graphs) also with gradients accumulated into grad_flat's views")
    parser.add_argument("--unaligned", nargs="*", type=_config, default=[],
                        help="size:K fused steps (and graphs) also with unpadded rows of frames (frame_align 1)")
    parser.add_argument("--check", nargs="*", type=_config, default=[_config(c) for c in ("tiny:7", "medium:7")])
    parser.add_argument("--op", nargs="*", type=_config, default=[_config(c) for c in ("tiny:32", "medium:16")])
    parser.add_argument("--tiles", nargs="*", type=_tile, default=[],
                        help="elements:max_block_t:warps tile shapes to try (section tune)")
    parser.add_argument("--sections", default="check,op,baseline,stacked")
    parser.add_argument("--profile", nargs="*", type=_config, default=[_config(c) for c in (
        "medium:7", "small:7", "tiny:32")], help="size:K fused steps to profile (section profile)")
    parser.add_argument("--variants", nargs="*", default=["all"],
                        help="fused variants: all, none (the blocks' chains alone) or stages joined by + "
                             f"({', '.join(ALL_STAGES)}); section profile runs each, section stacked each per run")
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
    section("profile", lambda: profile_section(speakers, device, args.profile, args.variants, out_dir))
    section("op", lambda: op_section(device, args.op))
    sizes = [s for s in ft.SIZES if any(size == s for size, _ in args.runs)]
    section("baseline", lambda: baseline_section(speakers, device, sizes, args.target_s))
    section("stacked", lambda: stacked_section(speakers, device, args.runs, args.fused_only, args.target_s,
                                               started + args.budget_s, args.graph, args.variants,
                                               args.accumulate, args.unaligned))
    results["tiles"] = dict(fused_gln.TILES)
    (out_dir / "fused_results.json").write_text(json.dumps(results, indent=1, default=float))
    print(f"\n{results['device']}, torch {results['torch']}, triton {results['triton']}, {results['date']}, "
          f"tiles {results['tiles']}")
    print(summarize(results))


if __name__ == "__main__":
    main()
