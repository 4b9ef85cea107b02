"""GPU-hours of the paper's whole grid on one H100, from measured per-job rates.

    python bench/workflow/grid_projection.py [--results bench/runs/2026-11-24_h100/finetune_call4.json]
        [--fused bench/runs/2026-11-25_h100/final_call4.json [--stack-variant "fused graph"] | --fused none]
        [--steps 600 1200 3000 6006]

The grid as the workflow runs it (configs/genda2025.yaml, `snakemake -n`):
10 real speakers x 7 fine-tuning conditions + 10 virtual speakers x 6 (no
real speech) = 130 fine-tunes per model size, 390 for tiny, small and medium
(batch 8 x 4 s crops, validation of 10 utterances every 60 steps, at most
6006 steps); 450 evaluations (the 390 plus 60 generalists) of 45 mixtures
each; and the TTS speech: 30 minutes per speaker and TTS system (the 6min
size is its first 50 utterances), scored for WER and speaker similarity.

Fine-tuning rates come from run files. `--results` has, per size, the
one-at-a-time baseline's step and validation times ("baseline"), the eager
stacks of K = 7 ("stacked", "K7 tf32") and the validation of a stack
("validation"), measured in one run (the workflow's `finetune_stacking: {by:
speaker}` stacks a speaker's 6-7 conditions in one job). With `--fused` (the
default), the step rates, one at a time and of the K = 7 stacks as the
workflow runs them (fused kernels and CUDA graph: `--stack-variant "fused
graph"`), come from a run file of bench/finetune/fused_kernels.py instead,
both measured in its run; validation rates stay those of `--results`
(validation runs the unfused, masked path). The defaults are the run files
that bench/RESULTS.md, "Grid projection" names. The other rates are taken from
bench/RESULTS.md, each with its section, and the output says which. How many
steps a fine-tune runs before early stopping is not known until real
fine-tunes run, so every figure is given for several step counts; 6006 is the
recipe's cap. Prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

RUNS = Path(__file__).resolve().parents[1] / "runs"
SIZES = ("tiny", "small", "medium")
REAL, VIRTUAL = 10, 10
FINETUNES_PER_SIZE = REAL * 7 + VIRTUAL * 6  # 130
STACKS_PER_SIZE = REAL + VIRTUAL  # one finetune_stacked job per speaker and size
EVALUATIONS = len(SIZES) * (FINETUNES_PER_SIZE + REAL + VIRTUAL)  # 450
VAL_EVERY = 60
TTS_AUDIO_S = 30 * 60  # per speaker and TTS system
SPEAKERS = REAL + VIRTUAL

# Rates not in the results files: (value, source)
JOB_OVERHEAD_S = (21.0, ('bench/RESULTS.md, "Fine-tuning throughput": one finetune job alone, wall 37 s minus '
                         "16 s of training steps"))
STACK_JOB_OVERHEAD_S = (8.6, ('bench/RESULTS.md, "Stacked fine-tuning through the rules": finetune_stacked job '
                              "wall 22.3 s less its 12.5 s training loop (tqdm) and 1.15 s of writing (log "
                              "timestamps)"))
PER_MODEL_IO_S = (0.29, ('bench/RESULTS.md, "Stacked fine-tuning through the rules": writing 4 members\' '
                         "checkpoint, log and plot took 1.15 s"))
EVAL_JOB_S = (19.0, ('bench/RESULTS.md, "Evaluation": evaluate job wall, one job per GPU, scoring in one '
                     "process"))
EVAL_JOB_SHARED_S = (31.4 / 6, ('bench/RESULTS.md, "Evaluation": 5 evaluations + score_mixtures alone through the '
                                "rules, 4 jobs per GPU, 31.4 s for 6 jobs (55.5 s with 1 per GPU)"))
TTS_RTF = {  # one job per GPU as the models' own code runs them / the workflow's fast settings
    "xtts": ((0.330, 0.0255), ('bench/RESULTS.md, "TTS synthesis speed": XTTS-v2, coqui\'s inference, one '
                               "process (0.330); batch_size 16, 2 processes sharing the H100 (0.0255; one process "
                               "0.047, coqui's 0.417 in that run)")),
    "speecht5": ((0.0097, 0.0097), ('bench/RESULTS.md, "TTS synthesis speed": SpeechT5 batch 32, one process '
                                    "(not measured shared)")),
    "yourtts": ((0.0230, 0.0042), ('bench/RESULTS.md, "TTS synthesis speed": YourTTS one process / 8 processes '
                                   "sharing the H100 (same run)")),
}
TTS_SCORING_RTF = ((0.031, 0.019), ('bench/RESULTS.md, "TTS scoring speed": Whisper large-v3 (decoding capped at '
                                    "34 tokens, as for the sentences) + Resemblyzer SECS one process / 4 sharing "
                                    "the H100 (0.0253 / 0.0131, same run), + UTMOS and DistillMOS (0.0061, one "
                                    "process); DNSMOS runs on the CPU after score_tts gives the GPU back, so it is "
                                    "not counted"))


def rates(results: dict, fused: dict | None = None, variant: str = "fused graph") -> dict:
    """Per size: seconds per model-step and per model-validation, one at a time and stacked
    (the step rates of `fused`, a fused-kernel bench results file, where given: its
    one-at-a-time baseline and its "{size} K7 {variant}" stacks)."""
    table = {}
    for size in SIZES:
        base = results["baseline"][size]
        validation = results["validation"][size]
        if fused is None:
            base_step_ms, k7_ms = base["ms_per_step"], results["stacked"][size]["K7 tf32"]["ms_per_step"]
        else:
            base_step_ms = fused["baseline"][size]["ms_per_step"]
            k7_ms = fused["stacked"][f"{size} K7 {variant}"]["ms_per_step"]
        table[size] = {
            "base_step_s": base_step_ms / 1000,
            "base_val_s": base["val_s_one_model"],
            "k7_step_s": k7_ms / 7000,
            "stacked_val_s": validation["val_s_all_models"] / validation["K"],
        }
    return table


def finetune_hours(rate: dict, steps: int, path: str) -> float:
    """GPU-hours of one size's 130 fine-tunes."""
    validations = math.ceil(steps / VAL_EVERY) + 1
    if path == "baseline":  # one finetune job per fine-tune, one job per GPU
        per_model = steps * rate["base_step_s"] + validations * rate["base_val_s"] + JOB_OVERHEAD_S[0]
        return FINETUNES_PER_SIZE * per_model / 3600
    # a stack claims a whole GPU: two stacks sharing one were measured 10% slower than one alone
    per_model = steps * rate["k7_step_s"] + validations * rate["stacked_val_s"] + PER_MODEL_IO_S[0]
    return (FINETUNES_PER_SIZE * per_model + STACKS_PER_SIZE * STACK_JOB_OVERHEAD_S[0]) / 3600


def tts_hours(shared: bool) -> tuple[float, float]:
    column = 1 if shared else 0
    synthesis = sum(SPEAKERS * TTS_AUDIO_S * rtf[column] for rtf, _ in TTS_RTF.values()) / 3600
    scoring = SPEAKERS * len(TTS_RTF) * TTS_AUDIO_S * TTS_SCORING_RTF[0][column] / 3600
    return synthesis, scoring


def report(results: dict, step_counts: list[int], fused: dict | None = None, variant: str = "fused graph") -> str:
    table = rates(results, fused, variant)
    lines = [(f"Measured on {results['device']} ({results['torch']}), {results['date'][:10]}; "
              f"data: {results['data']}.")]
    if fused is not None:
        lines.append(f"Step rates (one at a time, K=7 stacks {variant}): {fused['device']} ({fused['torch']}, "
                     f"Triton {fused['triton']}), {fused['date'][:16]}, one run; validation rates from the file above.")
    lines += ["", "Per-model rates (seconds):", "",
             (f"| size | one at a time, s/step | stacked K=7{' ' + variant if fused else ''}, s/model-step | x | "
              "validation per model, one at a time / stacked |"),
             "|---|---|---|---|---|"]
    for size, r in table.items():
        lines.append(f"| {size} | {r['base_step_s']:.4f} | {r['k7_step_s']:.4f} | "
                     f"{r['base_step_s'] / r['k7_step_s']:.1f} | {r['base_val_s']:.3f} / {r['stacked_val_s']:.4f} |")
    lines += ["", "Other rates:", ""]
    others = [("finetune job overhead (s)", JOB_OVERHEAD_S), ("finetune_stacked job overhead (s)", STACK_JOB_OVERHEAD_S),
              ("per-member output writing in a stack (s)", PER_MODEL_IO_S),
              ("evaluate job, one per GPU (s)", EVAL_JOB_S),
              ("evaluate job, 4 per GPU, wall per job (s)", (round(EVAL_JOB_SHARED_S[0], 2), EVAL_JOB_SHARED_S[1])),
              *((f"{tts} RTF (one / shared)", (f"{v[0]:g} / {v[1]:g}", src)) for tts, (v, src) in TTS_RTF.items()),
              ("TTS scoring RTF (one / shared)",
               (f"{TTS_SCORING_RTF[0][0]:g} / {TTS_SCORING_RTF[0][1]:g}", TTS_SCORING_RTF[1]))]
    for name, (value, source) in others:
        lines.append(f"- {name}: {value} ({source})")

    eval_base = EVALUATIONS * EVAL_JOB_S[0] / 3600
    eval_fast = EVALUATIONS * EVAL_JOB_SHARED_S[0] / 3600
    synth_base, scoring_base = tts_hours(shared=False)
    synth_fast, scoring = tts_hours(shared=True)
    lines += ["", (f"GPU-hours on one H100 ({len(SIZES) * FINETUNES_PER_SIZE} fine-tunes, {EVALUATIONS} "
                   f"evaluations, {SPEAKERS * len(TTS_RTF) * TTS_AUDIO_S / 3600:.0f} h of synthesized speech):"), "",
              ("| steps per fine-tune | fine-tuning: one per job / stacked by speaker | "
               "whole grid, one job per GPU | whole grid, workflow's fast settings |"),
              "|---|---|---|---|"]
    for steps in step_counts:
        base = sum(finetune_hours(table[s], steps, "baseline") for s in SIZES)
        stacked = sum(finetune_hours(table[s], steps, "stacked") for s in SIZES)
        whole_base = base + eval_base + synth_base + scoring_base
        whole_fast = stacked + eval_fast + synth_fast + scoring
        lines.append(f"| {steps} | {base:.2f} / {stacked:.2f} | {whole_base:.2f} | {whole_fast:.2f} |")
    xtts_hours = SPEAKERS * TTS_AUDIO_S * TTS_RTF["xtts"][0][1] / 3600
    lines += ["", (f"Evaluation {eval_base:.2f} GPU-h one job per GPU, {eval_fast:.2f} with 4 jobs "
                   f"sharing the GPU; synthesis {synth_base:.2f} one job per GPU, {synth_fast:.2f} with several "
                   f"jobs per GPU (xtts {xtts_hours:.2f}); TTS scoring {scoring_base:.2f} one job per GPU, "
                   f"{scoring:.2f} with 4 per GPU."),
              ("The fast settings: finetune_stacking by speaker (one stack of 6-7 per job, each on a GPU of its "
               f"own{', ' + variant if fused else ''}), several jobs per GPU for evaluation and TTS scoring (4) "
               "and synthesis (YourTTS 8; XTTS batch_size 16 in 2 jobs), SpeechT5 batch 32.")]
    fixed = eval_fast + synth_fast + scoring + sum(finetune_hours(table[s], 0, "stacked") for s in SIZES)
    per_step = sum(FINETUNES_PER_SIZE * (table[s]["k7_step_s"] + table[s]["stacked_val_s"] / VAL_EVERY)
                   for s in SIZES) / 3600
    limit = (4.0 - fixed) / per_step
    lines.append(f"The whole grid stays within 4 GPU-hours up to {limit:.0f} steps per fine-tune on average"
                 if limit > 0 else "The whole grid does not fit in 4 GPU-hours at any step count.")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RUNS / "2026-11-24_h100" / "finetune_call4.json",
                        help="fine-tuning throughput results: baseline, K7 stacks and validation rates")
    parser.add_argument("--fused", default=str(RUNS / "2026-11-25_h100" / "final_call4.json"),
                        help="fused-kernel bench results for the step rates, or 'none' for --results' eager stacks")
    parser.add_argument("--stack-variant", default="fused graph",
                        help="which K7 stacks of --fused: 'fused graph' (the workflow's default) or 'fused'")
    parser.add_argument("--steps", nargs="+", type=int, default=[600, 1200, 3000, 6006])
    args = parser.parse_args(argv)
    fused = None if args.fused == "none" else json.loads(Path(args.fused).read_text())
    print(report(json.loads(args.results.read_text()), args.steps, fused, args.stack_variant))


if __name__ == "__main__":
    main()
