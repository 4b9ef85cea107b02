"""The table and verdict of bench/finetune/gpu_slice/beside.sh: its two arms' GPU jobs from their benchmark files.

    python bench/finetune/gpu_slice/beside_report.py ARM_DIR:LABEL:START_EPOCH:WALL_S ... [--nvidia-smi CSV]

For each arm (a working folder, its label, when its snakemake run started and how long it ran): per GPU rule, the
jobs, their summed seconds, and when the first started and the last ended (seconds from the arm's start; a job's
start is its benchmark file's time less its duration); the time at least one GPU job ran; the peak GPU memory that
nvidia-smi saw during the arm. Then each other arm's wall against the baseline's (the first) and a verdict.
"""

from __future__ import annotations

import argparse
import csv
import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from bench.workflow.grid_slice.table import union_seconds  # noqa: E402

GPU_RULES = ("finetune_stacked", "score_tts", "evaluate_stacked")


def jobs_of(work: Path, start: float) -> list[dict]:
    """The arm's GPU jobs (those of the prepared folder it was copied from ended before `start`)."""
    jobs = []
    for rule in GPU_RULES:
        for tsv in sorted((work / "benchmarks" / rule).rglob("*.tsv")):
            with tsv.open() as f:
                seconds = float(next(csv.DictReader(f, delimiter="\t"))["s"])
            end = tsv.stat().st_mtime - start
            if end > 0:
                jobs.append({"rule": rule, "job": str(tsv.relative_to(work / "benchmarks" / rule).with_suffix("")),
                             "s": seconds, "start": end - seconds, "end": end})
    return jobs


def peak_gib(smi: Path | None, start: float, wall: float) -> float | None:
    if smi is None or not smi.is_file():
        return None
    peak = None
    for row in csv.reader(smi.open()):
        try:
            stamp = datetime.strptime(row[0].strip(), "%Y/%m/%d %H:%M:%S.%f").timestamp()
            used = float(row[1]) / 1024
        except (ValueError, IndexError):
            continue
        if start <= stamp <= start + wall:
            peak = used if peak is None else max(peak, used)
    return peak


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arms", nargs="+", help="WORK_DIR:LABEL:START_EPOCH:WALL_S, the baseline first")
    parser.add_argument("--nvidia-smi", type=Path, default=None, help="nvidia-smi samples (timestamp, MiB used, %%)")
    args = parser.parse_args(argv)
    walls, stacks = [], []
    for arm in args.arms:
        work, label, start, wall = arm.split(":")
        start, wall = float(start), float(wall)
        jobs = jobs_of(Path(work), start)
        peak = peak_gib(args.nvidia_smi, start, wall)
        print(f"\n{label}: snakemake {wall:.0f} s; a GPU job running {union_seconds([(j['start'], j['end']) for j in jobs]):.0f} s"
              f" of it; peak GPU memory {'not sampled' if peak is None else f'{peak:.1f} GiB'}")
        print("| rule | jobs | job seconds | first start (s) | last end (s) |")
        print("|---|---|---|---|---|")
        for rule in GPU_RULES:
            mine = [j for j in jobs if j["rule"] == rule]
            if mine:
                print(f"| {rule} | {len(mine)} | {sum(j['s'] for j in mine):.1f} | {min(j['start'] for j in mine):.0f}"
                      f" | {max(j['end'] for j in mine):.0f} |")
        for job in sorted(jobs, key=lambda j: j["start"]):
            print(f"  {job['start']:6.1f} - {job['end']:6.1f} s  {job['rule']}/{job['job']}")
        walls.append((label, wall))
        stacks.append(sum(j["s"] for j in jobs if j["rule"] == "finetune_stacked"))
    (base, base_wall), base_stacks = walls[0], stacks[0]
    print(f"\nbaseline ({base}): {base_wall:.0f} s, the stacks' own time {base_stacks:.0f} s")
    for (label, wall), stack_s in zip(walls[1:], stacks[1:]):
        gain = base_wall / wall
        verdict = ("the slots beside the stacks pay" if gain > 1.05 else
                   "no gain beyond 5%" if gain >= 0.95 else "the slots beside the stacks cost time")
        print(f"{label}: {wall:.0f} s, {gain:.2f}x the baseline; the stacks' own time {stack_s:.0f} s "
              f"({stack_s / base_stacks:.2f}x: what the jobs beside them cost them); verdict: {verdict}")

if __name__ == "__main__":
    main()
