"""Several copies of a bench worker sharing one device, started together.

A worker is a command that loads its model, warms up, then calls
`wait_for_go(ready, go)` and does its timed work, writing a JSON with
`window_start` and `window_end` (time.time() around the timed work) and the
seconds of audio it made or scored. `run_workers` starts `count` copies (each
given `--ready R --go G --out-json J`), waits until all are ready, lets them go,
and returns the combined rate: wall time from the first start to the last end
over all the audio, which is what a device shared by that many jobs delivers.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path


def add_worker_args(parser: argparse.ArgumentParser, what: str) -> None:
    """--processes (the runs to make) and the hidden --ready/--go of a worker; `what` says
    what every worker does."""
    parser.add_argument("--processes", type=int, nargs="+", default=None,
                        help=f"run N worker processes at once on the device, for each N given ({what}); "
                             "report their combined rate")
    parser.add_argument("--ready", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--go", type=Path, default=None, help=argparse.SUPPRESS)


def wait_for_go(ready: Path, go: Path, poll_s: float = 0.05) -> None:
    """Say this worker is ready, then wait for the start signal."""
    Path(ready).touch()
    while not Path(go).exists():
        time.sleep(poll_s)


def run_workers(command: list[str], count: int, work_dir: Path, audio_key: str, timeout_s: float = 600.0) -> dict:
    """`count` copies of `command` at once; their combined real-time factor."""
    run_dir = Path(work_dir) / f"n{count}"
    run_dir.mkdir(parents=True, exist_ok=True)
    go = run_dir / "go"
    procs = [subprocess.Popen([*command, "--ready", str(run_dir / f"ready{i}"), "--go", str(go),
                               "--out-json", str(run_dir / f"{i}.json")], stdout=subprocess.DEVNULL)
             for i in range(count)]
    deadline = time.time() + timeout_s
    try:
        while sum((run_dir / f"ready{i}").exists() for i in range(count)) < count:
            if any(p.poll() not in (None, 0) for p in procs) or time.time() > deadline:
                raise RuntimeError(f"a worker of the {count}-process run failed or did not start")
            time.sleep(0.1)
        go.touch()
        if any(p.wait(timeout=max(deadline - time.time(), 1.0)) != 0 for p in procs):
            raise RuntimeError(f"a worker of the {count}-process run failed")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    workers = [json.loads((run_dir / f"{i}.json").read_text()) for i in range(count)]
    wall = max(w["window_end"] for w in workers) - min(w["window_start"] for w in workers)
    audio = sum(w[audio_key] for w in workers)
    return {"processes": count, "wall_s": wall, "audio_s": audio, "rtf_combined": wall / audio,
            "rtf_per_process": [(w["window_end"] - w["window_start"]) / w[audio_key] for w in workers],
            "peak_gpu_mem_gb_per_process": max(w.get("peak_gpu_mem_gb", 0.0) for w in workers)}


def run_counts(command: list[str], counts: list[int], work_dir: Path, audio_key: str,
               out_json: Path | None = None) -> list[dict]:
    """run_workers for each count in turn; prints each combined RTF and the table, saves the runs."""
    runs = []
    for count in counts:
        runs.append(run_workers(command, count, work_dir, audio_key))
        print(f"{count} processes: combined RTF {runs[-1]['rtf_combined']:.4f}", flush=True)
    print(table(runs))
    if out_json:
        Path(out_json).parent.mkdir(parents=True, exist_ok=True)
        Path(out_json).write_text(json.dumps(runs, indent=2))
    return runs


def table(runs: list[dict]) -> str:
    """Markdown: the runs against the first."""
    base = runs[0]["rtf_combined"]
    lines = ["| processes | audio (s) | wall (s) | combined RTF | x first row | RTF seen by each process |",
             "|---|---|---|---|---|---|"]
    for r in runs:
        each = r["rtf_per_process"]
        lines.append(f"| {r['processes']} | {r['audio_s']:.1f} | {r['wall_s']:.1f} | {r['rtf_combined']:.4f} | "
                     f"{base / r['rtf_combined']:.2f} | {min(each):.4f}-{max(each):.4f} |")
    return "\n".join(lines)
