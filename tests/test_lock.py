"""Two snakemake processes in one working folder: while a run holds the folder's lock, a second
run that would make any of the same files refuses with snakemake's lock message and changes
nothing; the first run finishes with its outputs complete."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_workflow import REPO, job_env, load_config, make_workdir, planned_jobs, snakemake_command

pytestmark = pytest.mark.slow

TARGET = "data/speakers/ciA/voice.json"  # one build_world job: the cheapest job of the CI setting
JOB_LOG = "logs/build_world/ciA.log"


def snapshot(workdir: Path) -> dict[str, tuple[int, int]]:
    """Every file a run makes or marks (outputs, logs, locks, incomplete markers): path -> (size, mtime)."""
    files = {}
    for top in ("data", "logs", "benchmarks", "results", ".snakemake/locks", ".snakemake/incomplete"):
        for path in (workdir / top).rglob("*"):
            if path.is_file():
                stat = path.stat()
                files[str(path.relative_to(workdir))] = (stat.st_size, stat.st_mtime_ns)
    return files


def wait_until(condition, process: subprocess.Popen, what: str, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the first run ended (exit {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {timeout_s} s")
        time.sleep(0.2)


def test_a_second_run_in_a_locked_folder_refuses_and_changes_nothing(tmp_path):
    workdir = make_workdir(tmp_path, load_config("tests/config/ci.yaml"),
                           (REPO / "tests" / "config" / "ci_speakers.tsv").read_text())
    locks = workdir / ".snakemake" / "locks"
    with open(tmp_path / "first.log", "w") as first_log:
        first = subprocess.Popen(snakemake_command(workdir, "--cores", "1", TARGET), stdout=first_log, stderr=subprocess.STDOUT,
                                 env=job_env(), start_new_session=True)
    try:
        wait_until(lambda: locks.is_dir() and any(locks.iterdir()) and (workdir / JOB_LOG).exists(), first,
                   "it held the lock with its job started")
        # Pause the first run (snakemake and its job) while the second one starts, so that it still
        # holds the lock then however fast the job is; it is resumed below and finishes.
        os.killpg(first.pid, signal.SIGSTOP)
        try:
            before = snapshot(workdir)
            # the whole workflow, which includes the first run's job
            second = subprocess.run(snakemake_command(workdir, "--cores", "1"), capture_output=True, text=True, env=job_env(),
                                    timeout=600, check=False)
            after = snapshot(workdir)
        finally:
            os.killpg(first.pid, signal.SIGCONT)
        output = second.stdout + second.stderr
        assert second.returncode != 0, output[-3000:]
        assert "Directory cannot be locked" in output, output[-3000:]
        assert after == before, "the refused run changed the working folder"

        assert first.wait(timeout=600) == 0, (tmp_path / "first.log").read_text()[-3000:]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    # the first run's outputs are complete: nothing left to do for its target, no lock, no marker
    assert (workdir / TARGET).is_file() and (workdir / "data" / "speakers" / "ciA" / "test").is_dir()
    assert not locks.exists() or not any(locks.iterdir()), "the lock outlived the run"
    still_to_run = [output for rule, output in planned_jobs(workdir) if rule == "build_world"]
    assert still_to_run and not [output for output in still_to_run if "speakers/ciA/" in output], still_to_run
