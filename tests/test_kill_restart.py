"""A run killed mid-way (SIGKILL to Snakemake's whole process group) and started
again completes, and recomputes nothing that had finished."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from test_workflow import REPO, SNAKEMAKE, load_config, make_workdir, planned_jobs, snakemake

pytestmark = pytest.mark.slow


def output_files(workdir: Path) -> dict[Path, int]:
    """Every visible file under data/ and results/, with its modification time."""
    files = {}
    for top in ("data", "results"):
        for path in (workdir / top).rglob("*"):
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(workdir).parts):
                files[path] = path.stat().st_mtime_ns
    return files


def wait_for(path: Path, process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"snakemake ended (exit {process.returncode}) before {path} appeared")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout_s} s")
        time.sleep(0.5)


def test_killed_run_restarts_and_recomputes_nothing_finished(tmp_path):
    config = load_config("tests/config/ci.yaml")
    sheet = (REPO / "tests" / "config" / "ci_speakers.tsv").read_text()
    workdir = make_workdir(tmp_path, config, sheet)
    cmd = SNAKEMAKE + ["--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
                       "--configfile", str(workdir / "config.yaml"), "--cores", "2"]
    with open(tmp_path / "first_run.log", "w") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            # the generalist's job is finished (snakemake starts a fine-tune only then): fine-tuning
            # and evaluation jobs are under way
            wait_for(workdir / "logs" / "finetune" / "tiny", process, timeout_s=900)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode != 0, "the run finished before it could be killed"

    # as after any hard kill, the working directory is still locked: release it as a user would
    snakemake(workdir, "--unlock")
    # what the restart would run; everything else present now is finished work
    pending = planned_jobs(workdir)
    assert any(rule == "aggregate" for rule, _ in pending)
    pending_outputs = [p.strip().rstrip("/") for _, output in pending for p in output.split(",") if p.strip()]

    def is_pending(path: Path) -> bool:
        relative = str(path.relative_to(workdir))
        return any(relative == p or relative.startswith(f"{p}/") for p in pending_outputs)

    finished = {path: mtime for path, mtime in output_files(workdir).items() if not is_pending(path)}
    assert any("pretrain" in str(path) for path in finished)

    snakemake(workdir, "--cores", "2")
    assert (workdir / "results" / "summary.md").is_file()
    changed = [str(path) for path, mtime in finished.items() if path.stat().st_mtime_ns != mtime]
    assert not changed, f"finished outputs were recomputed: {changed[:5]}"
    assert planned_jobs(workdir) == []
