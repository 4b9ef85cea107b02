"""Per-stage wall time of a finished run, from Snakemake's benchmark files.

    python bench/workflow/stage_times.py [benchmarks/]

Prints a Markdown table: jobs, total and mean wall seconds per rule, the CPU seconds and peak
memory of its jobs as Snakemake sampled them. Snakemake samples a job every 0.5 s for its first
15 s, then every 30 s, and not at its end: both are lower bounds, and a job of 15-45 s can lose
up to 30 s of CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def stage_times(bench_dir: Path) -> pd.DataFrame:
    rows = []
    for tsv in sorted(bench_dir.rglob("*.tsv")):
        rule = tsv.relative_to(bench_dir).parts[0].removesuffix(".tsv")
        table = pd.read_csv(tsv, sep="\t")
        cpu_s = pd.to_numeric(table["cpu_time"], errors="coerce").iloc[0] if "cpu_time" in table else float("nan")
        rows.append({"rule": rule, "s": float(table["s"].iloc[0]), "cpu_s": float(cpu_s),
                     "max_rss_mb": float(pd.to_numeric(table["max_rss"], errors="coerce").iloc[0])})
    if not rows:
        raise SystemExit(f"{bench_dir}: no benchmark files (run the workflow first)")
    frame = pd.DataFrame(rows)
    return frame.groupby("rule", sort=False).agg(
        jobs=("s", "size"), total_s=("s", "sum"), mean_s=("s", "mean"), cpu_s=("cpu_s", "sum"),
        max_rss_mb=("max_rss_mb", "max")
    ).reset_index()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_dir", nargs="?", type=Path, default=Path("benchmarks"),
                        help="the run's benchmark folder (default: benchmarks)")
    table = stage_times(parser.parse_args(argv).bench_dir)
    print("| rule | jobs | total (s) | mean per job (s) | CPU sampled (s) | peak RSS sampled (MB) |")
    print("|---|---|---|---|---|---|")
    for _, row in table.iterrows():
        print(f"| {row.rule} | {row.jobs} | {row.total_s:.1f} | {row.mean_s:.1f} | {row.cpu_s:.1f} | "
              f"{row.max_rss_mb:.0f} |")
    print(f"| all | {table.jobs.sum()} | {table.total_s.sum():.1f} | | {table.cpu_s.sum():.1f} | |")
    print("(sampled: by Snakemake, every 0.5 s for a job's first 15 s, then every 30 s, not at its end: lower bounds)")


if __name__ == "__main__":
    main()
