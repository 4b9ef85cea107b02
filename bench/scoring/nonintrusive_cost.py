"""The cost of the scores without a reference (predicted MOS, WER) per evaluate and score_mixtures job.

    python bench/scoring/nonintrusive_cost.py [--test-dir DIR] [--device cpu] [--workers 2]
        [--repeats 2] [--variant NAME="OPTIONS" ...] [--demo-only] [--out-json FILE]

Runs the two steps as the workflow runs them (`python -m workflow_scripts.score_mixtures`, then
`python -m workflow_scripts.evaluate --input-scores` on its table), in subprocesses, on one test
folder with a randomly initialised tiny ConvTasNet (the cost of enhancing does not depend on the
weights). Without --test-dir, the demo's speaker spk01 is built first, as the demo's build_world
job builds it (config.yaml's demo_world, seed 1): 45 mixtures of 2-7 s, with their text. The baseline computes no score without a reference
(`--mos` with no predictor, `--asr none`); each variant adds its options to both steps. Variants
run in turn, repeat after repeat, so that a change in the machine's load falls on all of them.

Per variant and step: the wall time and the CPU time of the job (its process and its scoring
processes, from getrusage), the median over the repeats, and the ratio to the baseline. The demo
estimate adds the extra CPU seconds of its 20 evaluate and 4 score_mixtures jobs (`--demo-jobs`)
and spreads them over its 2 cores, against its `snakemake` wall time (`--demo-wall-s`, from
bench/RESULTS.md, "Demo end to end on CPU"): the demo keeps both cores busy, so extra CPU time
is extra wall time divided by the cores. The last line is the verdict: the estimate for the demo's
own setting (config.yaml's `evaluation`, the variant "demo config"; with --demo-only the only one
measured beside the baseline) against the budget of 15% of the demo's time (`--budget-pct`).

On a GPU (`--device cuda`), DistillMOS and Whisper run on the device before the job gives it
back, DNSMOS in the scoring processes; the extra variant "distillmos on the CPU" runs DistillMOS
in the scoring processes instead, after the GPU is given back (the bench patches this in: the
steps offer no such option), so that the two placements are compared in one run.

A variant whose step fails (a package missing on the machine, say) is reported as not run, with the
last line the step wrote to stderr, and is not tried again; the other variants are still measured,
written and judged. Without the baseline there is no ratio, and without the demo's setting no verdict.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

DEFAULT_VARIANTS = {
    "dnsmos+distillmos": "--mos dnsmos distillmos",
    "dnsmos+distillmos, 9 of 45": "--mos dnsmos distillmos --max-utterances 9",
    "distillmos": "--mos distillmos",
    "pocketsphinx WER, 9 of 45": "--mos --asr pocketsphinx --max-utterances 9",
}
BASELINE = ("baseline", "--mos --asr none")
DEMO = "demo config"  # config.yaml's evaluation
ON_CPU = "distillmos on the CPU"  # on a GPU: DistillMOS in the scoring processes


def demo_options() -> str:
    """The steps' options of the demo's own setting (config.yaml's `evaluation`, as the rules pass it)."""
    import yaml

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    evaluation = config.get("evaluation", {})
    asr = config["tts_scoring"]["asr"] if evaluation.get("asr") else "none"
    return (f"--mos {' '.join(evaluation.get('mos', ['dnsmos', 'distillmos']))} --asr {asr}"
            f" --max-utterances {evaluation.get('max_utterances', 0)}")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class StepFailed(RuntimeError):
    """A step that exited with an error: the variant cannot be measured on this machine."""


def timed(cmd: list[str], log: Path) -> tuple[float, float]:
    """(wall s, CPU s) of one step run as a subprocess, its stderr in `log` (the step's name: the log's)."""
    cpu, start = cpu_seconds(), time.perf_counter()
    with open(log, "w") as err:
        returncode = subprocess.run(cmd, stderr=err, cwd=REPO).returncode
    if returncode != 0:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
        raise StepFailed(f"{log.stem} exited with {returncode}: " + (lines[-1] if lines else "no message"))
    return time.perf_counter() - start, cpu_seconds() - cpu


def step(name: str, distillmos_on_cpu: bool) -> list[str]:
    """The command that runs a step's main(), with DistillMOS patched onto the CPU if asked."""
    if not distillmos_on_cpu:
        return [sys.executable, "-m", f"workflow_scripts.{name}"]
    code = ("import sys; from workflow_scripts.scoring import mos; mos.DistillMOSPredictor.uses_gpu = False; "
            f"from workflow_scripts import {name}; {name}.main(sys.argv[1:])")
    return [sys.executable, "-c", code]


def run_variant(options: str, test_dir: Path, model: Path, out: Path, device: str, workers: int,
                distillmos_on_cpu: bool = False) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    extra = shlex.split(options)
    mixtures = out / "mixtures.csv"
    score_cmd = [*step("score_mixtures", distillmos_on_cpu), "--test-dir", str(test_dir),
                 "--out-csv", str(mixtures), "--device", device, *extra]
    eval_cmd = [*step("evaluate", distillmos_on_cpu), "--model", str(model), "--test-dir",
                str(test_dir), "--input-scores", str(mixtures), "--device", device, "--workers", str(workers),
                "--out-csv", str(out / "eval.csv"), "--out-summary", str(out / "eval.json"), *extra]
    score_wall, score_cpu = timed(score_cmd, out / "score_mixtures.log")
    eval_wall, eval_cpu = timed(eval_cmd, out / "evaluate.log")
    return {"score_mixtures": {"wall_s": score_wall, "cpu_s": score_cpu},
            "evaluate": {"wall_s": eval_wall, "cpu_s": eval_cpu}}


def build_demo_speaker(out_dir: Path, speaker: str = "spk01", seed: int = 1) -> Path:
    """The demo's speaker as its build_world job makes it (config.yaml's demo_world)."""
    import yaml

    world = yaml.safe_load((REPO / "config.yaml").read_text())["demo_world"]
    sizes = yaml.safe_load((REPO / "config.yaml").read_text())["data_sizes"]
    num_sentences = max(size["train"] + size["val"] for size in sizes.values())
    subprocess.run([sys.executable, "-m", "workflow_scripts.build_world", "--speaker", speaker, "--seed", str(seed),
                    "--sentences", world["sentences"], "--num-sentences", str(num_sentences),
                    "--num-test-utterances", str(world["num_test_utterances"]),
                    "--num-noises", str(world["num_noises"]), "--test-snrs", *map(str, world["test_snrs_db"]),
                    "--enrollment-seconds", *map(str, world["enrollment_seconds"]),
                    "--base-voices", *world["base_voices"], "--out-dir", str(out_dir)],
                   check=True, cwd=REPO, stderr=subprocess.DEVNULL)
    return out_dir


def median(runs: list[dict], step: str, key: str) -> float:
    return statistics.median(run[step][key] for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test-dir", type=Path, help="a test folder (default: the demo's spk01, built here)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=2, help="evaluate's scoring processes (the demo: 2)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--variant", action="append", default=[], metavar='NAME="OPTIONS"',
                        help="a variant's options for both steps (default: " + "; ".join(
                            f"{k}: {v}" for k, v in DEFAULT_VARIANTS.items()) + ")")
    parser.add_argument("--demo-jobs", type=int, nargs=2, default=[20, 4], metavar=("EVALUATE", "SCORE_MIXTURES"))
    parser.add_argument("--demo-wall-s", type=float, default=719.0, help="the demo's snakemake wall time")
    parser.add_argument("--demo-cores", type=int, default=2)
    parser.add_argument("--budget-pct", type=float, default=15.0, help="the demo's allowed slowdown")
    parser.add_argument("--demo-only", action="store_true", help="measure the demo's setting and the baseline only")
    parser.add_argument("--out-json", type=Path)
    args = parser.parse_args()
    if args.test_dir is not None and not (args.test_dir / "test.csv").is_file():
        parser.error(f"{args.test_dir}: no test.csv")
    if args.demo_only:
        variants = {}
    else:
        variants = dict(v.split("=", 1) for v in args.variant) or dict(DEFAULT_VARIANTS)
        if args.device.startswith("cuda") and not args.variant:
            variants[ON_CPU] = "--mos distillmos"
    variants = {BASELINE[0]: BASELINE[1], DEMO: demo_options(), **variants}

    import torch

    from workflow_scripts.model.convtasnet import build_model, save_checkpoint

    with tempfile.TemporaryDirectory(prefix="nonintrusive_cost_") as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        model = tmp / "model.pt"
        save_checkpoint(model, build_model("tiny"))
        if args.test_dir is None:
            args.test_dir = build_demo_speaker(tmp / "spk01") / "test"
        runs = {name: [] for name in variants}
        not_run = {}  # variant: why (a step failed; not tried again)
        for repeat in range(args.repeats):
            for index, (name, options) in enumerate(variants.items()):
                if name in not_run:
                    continue
                try:
                    result = run_variant(options, args.test_dir, model, tmp / f"{repeat}_{index}", args.device,
                                         args.workers, distillmos_on_cpu=name == ON_CPU)
                except StepFailed as error:
                    not_run[name] = str(error)
                    print(f"repeat {repeat} {name}: not run ({error})", flush=True)
                    continue
                runs[name].append(result)
                print(f"repeat {repeat} {name}: " + ", ".join(
                    f"{step} {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU" for step, r in result.items()),
                    flush=True)

    keys = [(step, key) for step in ("score_mixtures", "evaluate") for key in ("wall_s", "cpu_s")]
    base = None if BASELINE[0] in not_run else {k: median(runs[BASELINE[0]], *k) for k in keys}
    n_eval, n_mix = args.demo_jobs
    print(f"\n{args.test_dir} on {args.device}, evaluate --workers {args.workers}, median of {args.repeats}"
          f" ({platform.node()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} at the end)")
    print("| variant | options | score_mixtures wall / CPU (s) | evaluate wall / CPU (s) | evaluate CPU ratio |"
          f" demo +% (est., {n_eval} + {n_mix} jobs) |")
    print("|---|---|---|---|---|---|")
    summary = {}
    for name, options in variants.items():
        if name in not_run:
            print(f"| {name} | `{options}` | not run: {not_run[name]} | | | |")
            summary[name] = {"options": options, "runs": runs[name], "not_run": not_run[name]}
            continue
        figures = {k: median(runs[name], *k) for k in keys}
        ratio = extra_cpu = demo_pct = None
        if base is not None:
            extra_cpu = (n_eval * (figures["evaluate", "cpu_s"] - base["evaluate", "cpu_s"])
                         + n_mix * (figures["score_mixtures", "cpu_s"] - base["score_mixtures", "cpu_s"]))
            demo_pct = 100 * extra_cpu / args.demo_cores / args.demo_wall_s
            ratio = figures["evaluate", "cpu_s"] / base["evaluate", "cpu_s"]
        print(f"| {name} | `{options}` | {figures['score_mixtures', 'wall_s']:.1f} / {figures['score_mixtures', 'cpu_s']:.1f}"
              f" | {figures['evaluate', 'wall_s']:.1f} / {figures['evaluate', 'cpu_s']:.1f}"
              + (" | n/a | n/a |" if base is None else f" | {ratio:.2f}x | {demo_pct:+.1f}% |"))
        summary[name] = {"options": options, "runs": runs[name], "evaluate_cpu_ratio": ratio,
                         "demo_extra_cpu_s": extra_cpu, "demo_extra_pct": demo_pct}
    missing = [name for name in (BASELINE[0], DEMO) if name in not_run]
    if missing:
        demo, within = None, None
        print(f"\nverdict: none on {args.device}: " + "; ".join(f"{name} not run ({not_run[name]})" for name in missing))
    else:
        demo = summary[DEMO]["demo_extra_pct"]
        within = demo <= args.budget_pct
        print(f"\nverdict: the demo's setting (`{variants[DEMO]}`) adds an estimated {demo:+.1f}% to the demo's"
              f" {args.demo_wall_s:.0f} s on {args.device}: {'within' if within else 'OVER'} the"
              f" {args.budget_pct:.0f}% budget")
    if not_run:
        print("not run: " + "; ".join(f"{name} ({why})" for name, why in not_run.items()))
    if args.out_json:
        args.out_json.parent.mkdir(parents=True, exist_ok=True)
        args.out_json.write_text(json.dumps({"test_dir": str(args.test_dir), "device": args.device,
                                             "workers": args.workers, "variants": summary,
                                             "not_run": not_run,
                                             "verdict": {"demo_extra_pct": demo, "budget_pct": args.budget_pct,
                                                         "within": within}}, indent=2) + "\n")

if __name__ == "__main__":
    main()
