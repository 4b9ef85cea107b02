"""Fine-tuning on the CPU with and without freed memory kept in the process (runtime.memory).

    python bench/finetune/cpu_memory.py [--steps 30] [--out-json cpu_memory.json]

The demo's recipe (batch 8, 1 s crops, lr 1e-3, validation every 15 steps) on one demo-world
speaker (bench/finetune/common.py's `world_data`, built with flite on first use) from the
challenge's tiny generalist where ../shared/genda25 has it: one `finetune_stacked` job of four
conditions (gt at 4, 8, 12 and 16 training utterances) and one `finetune` job (16), each run as the
workflow runs it (`python -m workflow_scripts.<step>`, one thread) in a process of its own, once as
the step is (`keep_freed_memory`) and once with glibc's allocator left as it is (the function
replaced by a no-op before the step starts). Baseline and candidate alternate in the same run;
per run it prints wall, user and system seconds, and the ratio of the wall times, and checks that
both give the same training log (the setting changes no result).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CHALLENGE_TINY, REPO, WORLD_DIR, run_info, world_data  # noqa: E402

# the step, with keep_freed_memory as it is or replaced by a no-op (the allocator's default)
RUNNER = """
import runpy, sys
if sys.argv[1] == "default":
    import workflow_scripts.runtime.memory as memory
    memory.keep_freed_memory = lambda: False
step = sys.argv[2]
sys.argv = [step, *sys.argv[3:]]
runpy.run_module(f"workflow_scripts.{step}", run_name="__main__")
"""
SIZES = (4, 8, 12, 16)  # training utterances of the stacked job's members (4 validate)


def recipe_args(steps: int) -> list[str]:
    return ["--batch-size", "8", "--crop-seconds", "1.0", "--lr", "1e-3", "--snr-db", "-5", "5",
            "--max-steps", str(steps), "--val-every", "15", "--patience", "3", "--seed", "0",
            "--device", "cpu", "--threads", "1"]


def run_step(mode: str, step: str, args: list[str]) -> dict:
    """Wall, user and system seconds and peak RSS of one step run in a process of its own."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", RUNNER, mode, step, *args], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)  # this process's own resource use
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{step} ({mode}) failed:\n{stderr[-3000:]}")
    return {"wall_s": wall, "user_s": usage.ru_utime, "sys_s": usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="training steps (the demo's 30)")
    parser.add_argument("--out-json", type=Path, default=None)
    args = parser.parse_args(argv)
    world_data()  # the speaker's folders, built on first use
    speaker = WORLD_DIR / "spk01"
    init = CHALLENGE_TINY if CHALLENGE_TINY.is_file() else None
    if init is None:
        raise SystemExit(f"{CHALLENGE_TINY}: the challenge's tiny generalist is needed (set GENDA25_DIR)")
    common = ["--init", str(init), "--noise-dir", str(speaker / "noises"), *recipe_args(args.steps)]
    results, logs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("default", "kept"):  # baseline first, then the step as it is
            out = Path(tmp) / mode
            members = [a for n in SIZES for a in ("--member", str(speaker / "gt"), str(n), "4", str(out / f"gt{n}"))]
            results[("finetune_stacked", mode)] = run_step(
                mode, "finetune_stacked", [*common, *members, "--precision", "fp32", "--batches", "plain",
                                           "--resume-file", str(out / "stack.resume.pt")])
            results[("finetune", mode)] = run_step(
                mode, "finetune", [*common, "--speech-dir", str(speaker / "gt"), "--num-train", str(SIZES[-1]),
                                   "--num-val", "4", "--out-dir", str(out / "single"),
                                   "--resume-file", str(out / "single.resume.pt")])
            logs[mode] = [pd.read_csv(out / name / "training_log.csv") for name in (*(f"gt{n}" for n in SIZES), "single")]
    same = all(a.equals(b) for a, b in zip(logs["default"], logs["kept"]))
    print(f"CPU fine-tuning, demo recipe, {args.steps} steps, one thread, {init.name}")
    print("| step | allocator | wall (s) | user (s) | system (s) | peak RSS (MB) |")
    print("|---|---|---|---|---|---|")
    for (step, mode), r in results.items():
        label = "freed memory kept" if mode == "kept" else "glibc default"
        print(f"| {step} | {label} | {r['wall_s']:.1f} | {r['user_s']:.1f} | {r['sys_s']:.1f} | {r['peak_rss_mb']:.0f} |")
    verdicts = {}
    for step in ("finetune_stacked", "finetune"):
        ratio = results[(step, "default")]["wall_s"] / results[(step, "kept")]["wall_s"]
        verdicts[step] = ratio
        print(f"{step}: kept is {ratio:.2f}x the default's speed (wall)")
    print(f"training logs identical with and without: {same}")
    print("verdict:", "faster, same results" if same and min(verdicts.values()) > 1.0 else "NOT better or results differ")
    if args.out_json:
        args.out_json.write_text(json.dumps({
            **run_info("cpu"), "steps": args.steps, "sizes": SIZES, "same_training_logs": same,
            "speedup": verdicts, "runs": [{"step": s, "mode": m, **r} for (s, m), r in results.items()],
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
