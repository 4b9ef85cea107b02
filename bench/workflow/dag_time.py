"""Time `snakemake -n` (the DAG of a whole config) in a fresh working folder.

    python bench/workflow/dag_time.py [--config configs/genda2025.yaml] [--sheet configs/genda2025_speakers.tsv]
        [--repeats 3] [--per-condition]

The folder holds only the config and the speaker sheet, so every job is
planned (nothing is up to date); prints the wall time of each dry run and the
number of jobs per rule. --per-condition: with `finetune_stacking: {by: none}` and `evaluation: {by: none}` (the config stacks by speaker).
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def dry_run(workdir: Path) -> tuple[float, collections.Counter]:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "-n", "--quiet", "rules"]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    counts = collections.Counter()
    for line in (done.stdout + done.stderr).splitlines():
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if match and match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return seconds, counts


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "genda2025.yaml")
    parser.add_argument("--sheet", type=Path, default=REPO / "configs" / "genda2025_speakers.tsv")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--per-condition", action="store_true", help="finetune_stacking.by and evaluation.by: none")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "speakers.tsv").write_text(args.sheet.read_text())
        config = dict(yaml.safe_load(args.config.read_text()), speakers=str(workdir / "speakers.tsv"))
        if args.per_condition:
            config["finetune_stacking"] = dict(config.get("finetune_stacking", {}), by="none")
            config["evaluation"] = dict(config.get("evaluation", {}), by="none")
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
        times = []
        for _ in range(args.repeats):
            seconds, counts = dry_run(workdir)
            times.append(seconds)
    stacking = ", one fine-tune and one evaluation job per condition" if args.per_condition else ""
    print(f"{args.config.name} with {args.sheet.name}{stacking}: {sum(counts.values())} jobs")
    for rule, count in sorted(counts.items()):
        print(f"  {rule}: {count}")
    print("snakemake -n wall time (s): " + ", ".join(f"{t:.1f}" for t in times))


if __name__ == "__main__":
    main()
