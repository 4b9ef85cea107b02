"""GPU-hours of the paper's whole grid on one H100, from measured per-job rates.

    python bench/grid_projection.py [--results bench/finetune_throughput_h100.json]
        [--steps 600 1200 3000 6006]

The grid (configs/genda2025.yaml): 20 speakers x 7 fine-tuning conditions x
3 model sizes = 420 fine-tunes (batch 8 x 4 s crops, validation of 10
utterances every 60 steps, at most 6006 steps), 480 evaluations (the 420
plus 60 generalists) of 45 mixtures each, and the TTS speech: 30 minutes per
speaker and TTS system (the 6min size is its first 50 utterances).

Fine-tuning and enhancement rates are read from the results of
bench/finetune_throughput.py; the other rates are taken from bench/RESULTS.md
or assumed, and the table says which. The number of steps a fine-tune runs
before early stopping is not known until real fine-tunes run, so every
figure is given for several step counts; 6006 is the recipe's cap.
Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

SIZES = ("tiny", "small", "medium")
SPEAKERS, CONDITIONS = 20, 7
FINETUNES_PER_SIZE = SPEAKERS * CONDITIONS
EVALUATIONS_PER_SIZE = SPEAKERS * (CONDITIONS + 1)
VAL_EVERY = 60
TTS_AUDIO_S = 30 * 60  # per speaker and TTS system

# Rates not measured by bench/finetune_throughput.py: (value, source)
JOB_OVERHEAD_S = (21.0, "RESULTS.md, GPU section: finetune job wall 37 s minus 16 s of training steps")
EVAL_JOB_S = (19.0, "RESULTS.md, GPU section: evaluate job wall (GPU claimed for the whole job)")
EVAL_GROUP_OVERHEAD_S = (10.0, "assumed: start, CUDA init and reading one speaker's 45 mixtures")
PER_MODEL_IO_S = (0.5, "assumed: reading a model's wavs, writing its checkpoint, log and plot")
TTS_RTF = {
    "xtts": (0.35, "RESULTS.md: XTTS-v2, one utterance at a time"),
    "speecht5": (0.0097, "RESULTS.md: SpeechT5, batch 32"),
    "yourtts": (0.05, "assumed (not measured)"),
}
TTS_SCORING_RTF = (0.03, "assumed (not measured): Whisper large-v3 + SECS on every synthesized second")


def best_stacked(results: dict, size: str) -> tuple[str, float]:
    """(variant, ms per model-step) of the fastest stacked run of a size."""
    best = None
    for name, row in results["stacked"].get(size, {}).items():
        if "ms_per_step" in row:
            k = int(name.split()[0][1:])
            candidate = (f"stacked {name}", row["ms_per_step"] / k)
            best = candidate if best is None or candidate[1] < best[1] else best
    for name, row in results.get("graphs", {}).items():
        if name.startswith(size + " ") and "ms_per_step" in row:
            k = int(name.split()[1][1:])
            candidate = (f"stacked {name.split(' ', 1)[1]}", row["ms_per_step"] / k)
            best = candidate if best is None or candidate[1] < best[1] else best
    return best


def rates(results: dict) -> dict:
    """Per size: seconds per model-step and per model-validation, baseline and fast."""
    table = {}
    for size in SIZES:
        base = results["baseline"][size]
        variant, fast_ms = best_stacked(results, size)
        validation = results["validation"][size]
        processes = [row for name, row in results.get("multiprocess", {}).items()
                     if name.startswith(size + " ") and "model_steps_per_s" in row]
        table[size] = {
            "base_step_s": base["ms_per_step"] / 1000,
            "base_val_s": base["val_s_one_model"],
            "fast_variant": variant,
            "fast_step_s": fast_ms / 1000,
            "fast_val_s": validation["val_s_all_models"] / validation["K"],
            "stack_k": int(variant.split()[1][1:]),
            "procs_step_s": 1 / max(r["model_steps_per_s"] for r in processes) if processes else math.nan,
            "eval_one_s": results["eval"][size]["one_at_a_time_s"],
            "eval_batched_s": results["eval"][size]["batched_s"],
        }
    measured = [s for s in SIZES if not math.isnan(table[s]["procs_step_s"])]
    for size in SIZES:
        if math.isnan(table[size]["procs_step_s"]) and measured:
            # not measured: the geometric mean of the measured sizes' speed-ups over their baselines
            ratios = [table[s]["base_step_s"] / table[s]["procs_step_s"] for s in measured]
            table[size]["procs_step_s"] = table[size]["base_step_s"] / math.prod(ratios) ** (1 / len(ratios))
            table[size]["procs_interpolated"] = True
    return table


def finetune_hours(rate: dict, steps: int, path: str) -> float:
    validations = math.ceil(steps / VAL_EVERY) + 1
    if path == "baseline":
        per_model = steps * rate["base_step_s"] + validations * rate["base_val_s"] + JOB_OVERHEAD_S[0]
        return FINETUNES_PER_SIZE * per_model / 3600
    if path == "processes":  # 8 jobs at once share the GPU: their start-up overlaps
        per_model = steps * rate["procs_step_s"] + validations * rate["base_val_s"] + JOB_OVERHEAD_S[0] / 8
        return FINETUNES_PER_SIZE * per_model / 3600
    groups = math.ceil(FINETUNES_PER_SIZE / rate["stack_k"])
    per_model = steps * rate["fast_step_s"] + validations * rate["fast_val_s"] + PER_MODEL_IO_S[0]
    return (FINETUNES_PER_SIZE * per_model + groups * JOB_OVERHEAD_S[0]) / 3600


def evaluation_hours(rate: dict, path: str) -> float:
    """GPU-hours of one size's 160 evaluations."""
    if path == "baseline":
        return EVALUATIONS_PER_SIZE * EVAL_JOB_S[0] / 3600
    # one job per speaker enhances all its models' mixtures in padded batches (its overhead split
    # over the sizes); the metrics are computed on the CPU, outside the GPU slot
    return (SPEAKERS * EVAL_GROUP_OVERHEAD_S[0] / len(SIZES) + EVALUATIONS_PER_SIZE * rate["eval_batched_s"]) / 3600


def tts_hours() -> tuple[float, float]:
    synthesis = sum(SPEAKERS * TTS_AUDIO_S * rtf for rtf, _ in TTS_RTF.values()) / 3600
    scoring = SPEAKERS * len(TTS_RTF) * TTS_AUDIO_S * TTS_SCORING_RTF[0] / 3600
    return synthesis, scoring


def report(results: dict, step_counts: list[int]) -> str:
    table = rates(results)
    header = ("| size | baseline s/step | fast path | fast s/model-step | x | 8 processes s/model-step | "
              "validation s/model (base / fast) | enhance 45 mixtures s (one at a time / batched) |")
    measured = f"Measured on {results['device']} ({results['torch']}), {results['date'][0][:10]}; data: {results['data']}."
    lines = [measured, "", "Per-job rates:", "", header, "|---|---|---|---|---|---|---|---|"]
    for size, r in table.items():
        lines.append(
            f"| {size} | {r['base_step_s']:.4f} | {r['fast_variant']} | {r['fast_step_s']:.4f} | "
            f"{r['base_step_s'] / r['fast_step_s']:.1f} | {r['procs_step_s']:.4f}"
            f"{' (interpolated)' if r.get('procs_interpolated') else ''} | "
            f"{r['base_val_s']:.3f} / {r['fast_val_s']:.4f} | {r['eval_one_s']:.3f} / {r['eval_batched_s']:.3f} |"
        )
    lines += ["", "Other rates:", ""]
    for name, (value, source) in [("job overhead (s)", JOB_OVERHEAD_S), ("evaluate job (s)", EVAL_JOB_S),
                                  ("evaluation group overhead (s)", EVAL_GROUP_OVERHEAD_S),
                                  ("per-model I/O in a group (s)", PER_MODEL_IO_S),
                                  *((f"{tts} RTF", v) for tts, v in TTS_RTF.items()),
                                  ("TTS scoring RTF", TTS_SCORING_RTF)]:
        lines.append(f"- {name}: {value:g} ({source})")

    synthesis, scoring = tts_hours()
    header = ("| steps per fine-tune | fine-tuning, baseline | fine-tuning, 8 processes | fine-tuning, stacked "
              "| evaluation, baseline / batched | fine-tune + evaluation, baseline | fine-tune + evaluation, fast "
              "| + synthesis and TTS scoring, fast |")
    lines += ["", "GPU-hours of the grid on one H100 (420 fine-tunes, 480 evaluations):", "", header,
              "|---|---|---|---|---|---|---|---|"]
    eval_base = sum(evaluation_hours(table[s], "baseline") for s in SIZES)
    eval_fast = sum(evaluation_hours(table[s], "fast") for s in SIZES)
    for steps in step_counts:
        base = sum(finetune_hours(table[s], steps, "baseline") for s in SIZES)
        procs = sum(finetune_hours(table[s], steps, "processes") for s in SIZES)
        fast = sum(finetune_hours(table[s], steps, "stacked") for s in SIZES)
        lines.append(f"| {steps} | {base:.2f} | {procs:.2f} | {fast:.2f} | {eval_base:.2f} / {eval_fast:.3f} | "
                     f"{base + eval_base:.2f} | {fast + eval_fast:.2f} | {fast + eval_fast + synthesis + scoring:.2f} |")
    xtts_hours = SPEAKERS * TTS_AUDIO_S * TTS_RTF["xtts"][0] / 3600
    lines += ["", f"Synthesis {synthesis:.2f} GPU-h (xtts {xtts_hours:.2f}), TTS scoring {scoring:.2f} GPU-h (assumed rate)."]
    budget = 4.0 - eval_fast
    per_step = sum(FINETUNES_PER_SIZE * (table[s]["fast_step_s"] + table[s]["fast_val_s"] / VAL_EVERY) for s in SIZES)
    fixed = sum(finetune_hours(table[s], 0, "stacked") for s in SIZES) * 3600
    lines.append(f"Fine-tuning + evaluation stay within 4 GPU-hours up to {(budget * 3600 - fixed) / per_step:.0f} "
                 "steps per fine-tune on average (stacked, full stacks).")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(Path(__file__).with_name("finetune_throughput_h100.json")))
    parser.add_argument("--steps", nargs="+", type=int, default=[600, 1200, 3000, 6006])
    args = parser.parse_args(argv)
    print(report(json.loads(Path(args.results).read_text()), args.steps))


if __name__ == "__main__":
    main()
