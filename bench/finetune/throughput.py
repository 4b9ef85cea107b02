"""Fine-tuning throughput: one model at a time against the stacked step as the workflow runs it.

    python bench/finetune/throughput.py --device cuda [--sizes tiny small medium] [--k 7] [--out DIR]
    python bench/finetune/throughput.py --device cpu --sizes tiny --steps 5 --curve-steps 5 --k 2 \
        --crop-seconds 1                                           # a CPU smoke check (minutes)
    python bench/finetune/throughput.py --dry-run                  # the plan, and what this machine lacks

For each model size (`--sizes`), in one run:
- baseline: one model, the plain trainer's step (what a `finetune` job runs: CropMixer batches drawn on
  the CPU, Adam, gradient clipping, loss.item() every step);
- stacked: K models (`--k`, 7 by default: a speaker's conditions in one `finetune_stacked` job), the
  step as the workflow runs it: crops mixed on the device, TF32, and on a GPU with Triton the fused
  kernels and a CUDA graph (the eager ops elsewhere);
with both step times, model-steps per second, their ratio and a one-line verdict per size.

Then the loss-curve check: two models from the challenge's tiny generalist (a built tiny model where its
file is absent; `--checkpoint`), model 0 at lr 1e-3 (large steps: a stress test), model 1 at 1e-6,
trained `--curve-steps` steps on the same batches (the plain trainer's own draws) by the plain trainer
(`training.loop.train`) and by `train_stacked` as the workflow runs it, validated every step on one
2-s mixture. It passes when every step's training loss and validation SDR of the stacked run is within
`--tolerance-db` dB of the plain run's: an absolute tolerance, as the losses are negative SDRs near 0 dB.

Data: one demo-world speaker built with the project's own world builder (bench/finetune/common.py,
`world_data`; `--world-dir`), batch 8 x 4 s crops. Writes throughput.json under `--out` (default
bench/runs/<UTC date>_<machine>/) and prints a Markdown summary last. Timing steps: `--steps` after
`--warmup` (default: as many as fill `--target-s` seconds).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.finetune.common import (  # noqa: E402
    CHALLENGE_TINY,
    SAMPLE_RATE,
    SIZES,
    WORLD_DIR,
    PlainTrainer,
    StackedTrainer,
    bench_recipe,
    default_out,
    dry_run,
    free_memory,
    initial_model,
    peak_gib,
    run_info,
    timed,
    world_data,
)
from workflow_scripts.model.convtasnet import build_model, count_parameters  # noqa: E402
from workflow_scripts.model.fused_gln import fused_available  # noqa: E402
from workflow_scripts.training.data import CropMixer, validation_set  # noqa: E402
from workflow_scripts.training.loop import train  # noqa: E402
from workflow_scripts.training.stacked_data import CropMixerBatches, StackedValidation  # noqa: E402
from workflow_scripts.training.stacked_loop import train_stacked  # noqa: E402

CURVE_LRS = (1e-3, 1e-6)


def step_times(size: str, k: int, speech, noises, device, args) -> dict:
    """ms per step of the baseline and of the stack, in this order, and what follows from them."""
    row = {"K": k, "params_per_model": count_parameters(build_model(size))}
    recipes = [bench_recipe(args.batch_size, args.crop_seconds, lr=1e-3 * (1 + i % 3), seed=i) for i in range(k)]
    steps = {"steps": args.steps, "target_s": args.target_s}
    try:
        plain = PlainTrainer(build_model(size), speech, noises, device, recipes[0])
        row["baseline_ms_per_step"] = 1000 * timed(plain.step, device, args.warmup, **steps)
        row["baseline_peak_gib"] = peak_gib(device)
    except torch.OutOfMemoryError:
        row["baseline_error"] = "out of memory"
    plain = None
    free_memory()
    try:
        models = [build_model(size) for _ in range(k)]
        with StackedTrainer(models, speech, noises, device, recipes) as stacked:
            row["fused"] = stacked.stack.fused
            row["cuda_graph"] = stacked.step_fn.cuda_graph
            # a CUDA graph is captured after three eager steps: those are warm-up too
            warmup = args.warmup + (4 if stacked.step_fn.cuda_graph else 0)
            row["stacked_ms_per_step"] = 1000 * timed(stacked.step, device, warmup, **steps)
        row["stacked_peak_gib"] = peak_gib(device)
    except torch.OutOfMemoryError:
        row["stacked_error"] = "out of memory"
    models = stacked = None
    free_memory()
    if "baseline_ms_per_step" in row and "stacked_ms_per_step" in row:
        row["baseline_model_steps_per_s"] = 1000 / row["baseline_ms_per_step"]
        row["stacked_model_steps_per_s"] = 1000 * k / row["stacked_ms_per_step"]
        row["ratio"] = row["stacked_model_steps_per_s"] / row["baseline_model_steps_per_s"]
    return row


def verdict(size: str, row: dict) -> str:
    if "ratio" not in row:
        return f"{size}: not measured ({row.get('baseline_error') or row.get('stacked_error')})"
    path = "fused kernels and CUDA graph" if row["fused"] and row["cuda_graph"] else "eager ops"
    judgement = "faster" if row["ratio"] > 1 else "not faster"
    return (f"{size}: a stack of {row['K']} ({path}) trains {row['ratio']:.2f}x the model-steps/s of one model at"
            f" a time ({row['stacked_model_steps_per_s']:.3g} against {row['baseline_model_steps_per_s']:.3g}):"
            f" {judgement}")


def loss_curves(speech, noises, device, args) -> dict:
    """The plain trainer and train_stacked on the same batches: per-step training losses and validation
    SDRs of two models, and their largest differences."""
    start_model, init = initial_model(args.checkpoint)
    recipes = [bench_recipe(args.batch_size, args.crop_seconds, lr=lr, seed=k, max_steps=args.curve_steps,
                            val_every=1, patience=10**6) for k, lr in enumerate(CURVE_LRS)]
    two_s = 2 * SAMPLE_RATE
    val_pairs = validation_set([speech[0][:two_s]], noises, seed=0)
    train_speech = speech[1:]
    started = time.perf_counter()
    plain = [train(copy.deepcopy(start_model), CropMixer(train_speech, noises, r), val_pairs, r, device).history
             for r in recipes]
    batches = CropMixerBatches([CropMixer(train_speech, noises, r) for r in recipes], recipes, device)
    results = train_stacked([copy.deepcopy(start_model) for _ in recipes], batches,
                            StackedValidation([val_pairs] * len(recipes), device), recipes, device,
                            precision="tf32", progress=False)
    stacked = [r.history for r in results]
    summary = {"init": init, "steps": args.curve_steps, "lrs": list(CURVE_LRS),
               "seconds": time.perf_counter() - started, "tolerance_db": args.tolerance_db}
    for column in ("train_loss", "val_sdr_db"):
        diffs = [np.abs(_series(s, column) - _series(p, column)) for s, p in zip(stacked, plain)]
        summary[f"max_abs_{column}_diff_db"] = float(max(np.nanmax(d) for d in diffs))
    summary["final_train_loss_db"] = {"plain": [h[-1]["train_loss"] for h in plain],
                                      "stacked": [h[-1]["train_loss"] for h in stacked]}
    summary["curves"] = {"plain": [_series(h, "train_loss").tolist() for h in plain],
                         "stacked": [_series(h, "train_loss").tolist() for h in stacked]}
    worst = max(summary["max_abs_train_loss_diff_db"], summary["max_abs_val_sdr_db_diff_db"])
    summary["passed"] = bool(worst <= args.tolerance_db)
    return summary


def _series(history: list[dict], column: str) -> np.ndarray:
    """A history's column by step (the training loss from step 1; step 0 has none)."""
    rows = history[1:] if column == "train_loss" else history
    return np.array([row[column] for row in rows], dtype=np.float64)


def summarize(result: dict) -> str:
    lines = ["| size | K | path | one at a time ms/step | stacked ms/step | model-steps/s (one / stacked) | ratio "
             "| peak GiB (one / stacked) |", "|---|---|---|---|---|---|---|---|"]
    for size, row in result["sizes"].items():
        if "ratio" not in row:
            lines.append(f"| {size} | {row['K']} | - | - | - | - | - | - |")
            continue
        path = "fused + graph" if row["fused"] and row["cuda_graph"] else "eager"
        peaks = " / ".join("-" if row[key] is None else f"{row[key]:.2f}"
                           for key in ("baseline_peak_gib", "stacked_peak_gib"))
        lines.append(f"| {size} | {row['K']} | {path} | {row['baseline_ms_per_step']:.1f} | "
                     f"{row['stacked_ms_per_step']:.1f} | {row['baseline_model_steps_per_s']:.3g} / "
                     f"{row['stacked_model_steps_per_s']:.3g} | {row['ratio']:.2f} | {peaks} |")
    lines += ["", *result["verdicts"]]
    curves = result.get("curves")
    if curves:
        lines.append(
            f"loss curves ({curves['steps']} steps, {curves['init']}): stacked against plain, largest difference "
            f"{curves['max_abs_train_loss_diff_db']:.3g} dB in training loss and "
            f"{curves['max_abs_val_sdr_db_diff_db']:.3g} dB in validation SDR: "
            f"{'within' if curves['passed'] else 'beyond'} {curves['tolerance_db']} dB")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=SIZES)
    parser.add_argument("--k", type=int, default=7, help="models in the stack")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop-seconds", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: about --target-s seconds)")
    parser.add_argument("--warmup", type=int, default=3, help="steps before timing")
    parser.add_argument("--target-s", type=float, default=2.0, help="seconds timed per step kind")
    parser.add_argument("--curve-steps", type=int, default=200, help="steps of the loss-curve check (0: none)")
    parser.add_argument("--tolerance-db", type=float, default=0.25, help="of the loss-curve check")
    parser.add_argument("--checkpoint", type=Path, default=CHALLENGE_TINY, help="tiny generalist of the curves")
    parser.add_argument("--world-dir", type=Path, default=WORLD_DIR, help="the demo-world speaker (made if absent)")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/runs/<UTC date>_<machine>/")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and what this machine lacks; run nothing")
    args = parser.parse_args(argv)
    if args.k < 1:
        parser.error("--k must be at least 1")
    if args.tolerance_db <= 0:
        parser.error("--tolerance-db must be positive (dB, absolute)")
    device = torch.device(args.device)
    if args.dry_run:
        steps = args.steps or f"as many as fill {args.target_s:g} s"
        dry_run({"sizes": " ".join(args.sizes), "stack": f"K = {args.k}",
                 "step times": f"baseline and stacked of each size, {args.warmup} warm-up steps, then {steps}",
                 "recipe": f"batch {args.batch_size} x {args.crop_seconds:g} s crops",
                 "loss curves": (f"{args.curve_steps} steps at lr {CURVE_LRS}, plain against stacked, each step within"
                                 f" {args.tolerance_db} dB (absolute)") if args.curve_steps > 0 else "none",
                 "out": args.out or "bench/runs/<UTC date>_<machine>/"}, device, args.world_dir,
                args.checkpoint if args.curve_steps > 0 else None, needs_triton=device.type == "cuda")
        return
    out = args.out or default_out(device)
    out.mkdir(parents=True, exist_ok=True)
    speech, noises = world_data(args.world_dir)
    result = {**run_info(device), "fused_available": fused_available(device), "K": args.k,
              "recipe": f"batch {args.batch_size} x {args.crop_seconds:g} s crops, Adam, clip 5",
              "data": f"demo-world speaker ({len(speech)} utterances, {len(noises)} noises, {args.world_dir})",
              "sizes": {}, "verdicts": []}
    json_path = out / "throughput.json"

    def save() -> None:
        json_path.write_text(json.dumps(result, indent=1, default=float))

    for size in args.sizes:
        row = step_times(size, args.k, speech, noises, device, args)
        result["sizes"][size] = row
        result["verdicts"].append(verdict(size, row))
        print(result["verdicts"][-1], flush=True)
        save()
    if args.curve_steps > 0:
        result["curves"] = loss_curves(speech, noises, device, args)
        save()
    print(f"\n{result['device']}, torch {result['torch']}, triton {result['triton']}, {result['date']}; "
          f"{result['recipe']}; {result['data']}; wrote {json_path}\n")
    print(summarize(result))
    if "curves" in result and not result["curves"]["passed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
