"""Data-parallel pre-training (`pretrain --processes N`), on the CPU with gloo.

The one-process run is today's: its loss curve is the one recorded before data-parallel training
existed (tests/training/pretrain_one_process_curve.json). Two processes, each training on half of
every batch, follow it up to float rounding; a batch that the processes cannot split evenly is
refused before any work; asked for several processes without a GPU (and without `--device cpu`),
it trains in one process; a run whose process is killed fails without outputs, and its rerun
continues from the resume file and finishes; a resume file continues on another number of processes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_pretrain import in_memory, pool  # noqa: F401 (the fixture: a tiny pool on disk)

from workflow_scripts.files.folders import read_speech_folder
from workflow_scripts.training.data import AudioFiles, BatchShare, CropMixer
from workflow_scripts.training.recipe import Recipe

REPO = Path(__file__).resolve().parents[1]
RECORDED = REPO / "tests" / "training" / "pretrain_one_process_curve.json"
# float32 sums in another order (two half batches, the gradients' all-reduce) move the curve by
# rounding, which Adam's steps carry on; absolute, in dB, as the losses here are near 0 dB
TOLERANCE_DB = 1e-3


def pretrain_args(pool: Path, out_dir: Path, *extra: str) -> list[str]:
    """The recorded run's command line (batch 4 of 0.25 s crops, 6 steps, validated every step)."""
    return [
        "--speech-dir", str(pool / "speech"), "--noise-dir", str(pool / "noises"),
        "--val-noise-dir", str(pool / "val_noises"), "--num-val", "2", "--batch-size", "4",
        "--crop-seconds", "0.25", "--max-steps", "6", "--val-every", "1", "--patience", "9", "--seed", "0",
        "--peak-normalize", "--val-metric", "si_sdri", "--device", "cpu", "--threads", "1",
        "--read-threads", "2", "--out-dir", str(out_dir), *extra,
    ]


def run_pretrain(args: list[str], timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workflow_scripts.pretrain", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, check=False, env=env)


def history(out_dir: Path) -> pd.DataFrame:
    return pd.read_csv(out_dir / "training_log.csv")


def cpu_vendor() -> str:
    """The CPU's vendor as /proc/cpuinfo names it ("GenuineIntel", "AuthenticAMD"), or "" elsewhere."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("vendor_id")), "")


def recorded_history() -> tuple[pd.DataFrame, bool]:
    """(the recorded curve, whether this machine computes as the recording one did: same torch,
    CPU kernels and CPU vendor, so that bit-identity can be asked for). An AMD CPU with AVX-512
    runs the same torch's kernels with other rounding in a step or two."""
    recorded = json.loads(RECORDED.read_text())
    same = recorded["recorded_with"]["torch"] == torch.__version__ and (
        recorded["recorded_with"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    ) and recorded["recorded_with"]["cpu_vendor"] == cpu_vendor()
    return pd.DataFrame(recorded["history"]).astype({"train_loss": float}), same


def test_one_process_follows_the_recorded_curve_bit_for_bit(pool, tmp_path):
    run = run_pretrain(pretrain_args(pool, tmp_path / "one"))
    assert run.returncode == 0, run.stderr[-4000:]
    assert "data-parallel" not in run.stderr
    recorded, same_machine = recorded_history()
    if same_machine:
        pd.testing.assert_frame_equal(history(tmp_path / "one"), recorded, check_exact=True)
    else:  # other CPU kernels round differently
        pd.testing.assert_frame_equal(history(tmp_path / "one"), recorded, check_exact=False, atol=TOLERANCE_DB)


def test_several_processes_without_a_gpu_train_in_one(pool, tmp_path):
    """The rule passes its gpu resource as --processes; on a machine without a GPU the job
    trains as one process does, with a warning."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    run = run_pretrain(pretrain_args(pool, tmp_path / "nogpu", "--processes", "2", "--device", "auto"), env=env)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "no GPU: --processes 2 ignored, training in one process on the CPU" in run.stderr
    assert "data-parallel" not in run.stderr
    recorded, same_machine = recorded_history()
    pd.testing.assert_frame_equal(history(tmp_path / "nogpu"), recorded, check_exact=same_machine,
                                  **({} if same_machine else {"atol": TOLERANCE_DB}))


def test_torchruns_one_process_follows_the_recorded_curve_bit_for_bit(pool, tmp_path):
    """The data-parallel path itself (DDP, the batch shares, the collectives) with one process,
    started by torchrun as a user would start it."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
               "-m", "workflow_scripts.pretrain", *pretrain_args(pool, tmp_path / "torchrun")]
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "rank 0 of 1" in run.stderr
    recorded, same_machine = recorded_history()
    if same_machine:
        pd.testing.assert_frame_equal(history(tmp_path / "torchrun"), recorded, check_exact=True)
    else:
        pd.testing.assert_frame_equal(history(tmp_path / "torchrun"), recorded, check_exact=False, atol=TOLERANCE_DB)


def test_two_processes_follow_the_one_process_curve(pool, tmp_path):
    out_dir = tmp_path / "two"
    run = run_pretrain(pretrain_args(pool, out_dir, "--processes", "2"))
    assert run.returncode == 0, run.stderr[-4000:]
    assert "data-parallel over 2 processes: 2 examples of each batch of 4 per process" in run.stderr
    two, (one, _) = history(out_dir), recorded_history()
    assert list(two["step"]) == list(one["step"]) and list(two["best"]) == list(one["best"])
    for column in ("train_loss", "val_si_sdri_db"):
        difference_db = np.nanmax(np.abs(two[column] - one[column]))
        assert difference_db <= TOLERANCE_DB, (column, difference_db)
    assert sorted(p.name for p in out_dir.iterdir()) == ["config.yaml", "loss.png", "model.pt", "training_log.csv"]


class Exchange:
    """sum_over_processes of `world_size` threads standing for processes."""

    def __init__(self, world_size: int):
        self.barrier = threading.Barrier(world_size)
        self.lock = threading.Lock()
        self.total = None

    def sum_over_processes(self, values: np.ndarray) -> np.ndarray:
        with self.lock:
            self.total = values.copy() if self.total is None else self.total + values
        self.barrier.wait()
        total = self.total.copy()
        if self.barrier.wait() == 0:
            self.total = None
        self.barrier.wait()
        return total


@pytest.mark.parametrize("world_size", [2, 4])
def test_the_shares_of_a_batch_make_the_whole_batch(pool, world_size):
    """Silent draws (the pool's half-silent utterance) are redrawn as one process redraws them,
    whichever process read them."""
    speech_paths = read_speech_folder(pool / "speech")["wav"]
    noise_paths = [str(p) for p in sorted((pool / "noises").glob("*.wav"))]
    recipe = Recipe(batch_size=8, crop_seconds=0.25, peak_normalize=True)
    whole_mixer = CropMixer(AudioFiles(speech_paths), AudioFiles(noise_paths), recipe, read_threads=2)
    whole_rng = np.random.default_rng(5)
    exchange = Exchange(world_size)
    shares, rngs = {}, {}

    def process(rank: int) -> None:
        mixer = CropMixer(AudioFiles(speech_paths), in_memory(noise_paths), recipe)
        rngs[rank] = rng = np.random.default_rng(5)
        share = BatchShare(rank, world_size, exchange.sum_over_processes)
        shares[rank] = [mixer.batch(rng, 8, share) for _ in range(12)]

    threads = [threading.Thread(target=process, args=(rank,)) for rank in range(world_size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(shares) == world_size, "a process of the exchange failed"
    for step in range(12):
        whole = whole_mixer.batch(whole_rng, 8)
        for part, joined in enumerate(zip(*(shares[rank][step] for rank in range(world_size)), strict=True)):
            np.testing.assert_array_equal(np.concatenate(joined), whole[part])
    assert all(rng.bit_generator.state == whole_rng.bit_generator.state for rng in rngs.values())


def test_a_batch_the_processes_cannot_split_is_refused(pool, tmp_path):
    run = run_pretrain(pretrain_args(pool, tmp_path / "three", "--processes", "3"))
    assert run.returncode != 0
    message = run.stderr.strip().splitlines()[-1]
    assert message.startswith("ValueError: --batch-size 4 is the global batch"), run.stderr[-2000:]
    assert "3 processes do not divide it; use one of [1, 2, 4]" in message and "generalist.pretrain_gpus" in message
    assert "data-parallel" not in run.stderr and not (tmp_path / "three").exists()  # refused before any work


def ranks_of(launcher_pid: int) -> dict[int, int]:
    """rank -> pid of the processes a launcher started (their environment holds their RANK)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = dict(
                item.split("=", 1) for item in (entry / "environ").read_bytes().decode().split("\0") if "=" in item
            )
            ancestors = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        if int(ancestors[1]) == launcher_pid and "RANK" in environ and "TORCHELASTIC_RUN_ID" in environ:
            found[int(environ["RANK"])] = int(entry.name)
    return found


def start_run(args: list[str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "w") as log:
        return subprocess.Popen([sys.executable, "-m", "workflow_scripts.pretrain", *args], cwd=REPO,
                                stdout=log, stderr=log)


def wait_for(condition, launcher: subprocess.Popen, log_path: Path, what: str, timeout_s: float = 240):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert launcher.poll() is None, log_path.read_text()[-4000:]
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.05)


def signal_held(launcher: subprocess.Popen, targets: dict[str, signal.Signals]) -> None:
    """Send each of "launcher", "rank 0", "rank 1" its signal while both ranks are held
    (SIGSTOP), then let them go: the signals land mid-way, whatever the machine's speed."""
    ranks = ranks_of(launcher.pid)
    assert sorted(ranks) == [0, 1], ranks
    pids = {"launcher": launcher.pid, "rank 0": ranks[0], "rank 1": ranks[1]}
    for pid in ranks.values():
        os.kill(pid, signal.SIGSTOP)
    for name, signum in targets.items():
        os.kill(pids[name], signum)
    for name in ("rank 0", "rank 1"):
        if targets.get(name) != signal.SIGKILL:
            os.kill(pids[name], signal.SIGCONT)


def test_a_killed_process_stops_the_run_and_the_rerun_resumes(pool, tmp_path):
    """SIGKILL of rank 1: the run fails, no outputs. The rerun resumes; SIGTERM to every process
    (as SLURM sends at a time limit) stops it after one step on both ranks, rank 0 writing the
    resume file; the third run, of one process, resumes from that step and finishes."""
    out_dir, resume_file = tmp_path / "run", tmp_path / "run.resume.pt"
    args = pretrain_args(pool, out_dir, "--processes", "2", "--resume-file", str(resume_file),
                         "--resume-every", "2")
    args[args.index("--max-steps") + 1], args[args.index("--val-every") + 1] = "40", "10"
    logs = [tmp_path / f"run{i}.log" for i in range(3)]
    runs = []
    try:
        runs.append(start_run(args, logs[0]))
        wait_for(resume_file.exists, runs[0], logs[0], "the first resume file")
        ranks = ranks_of(runs[0].pid)
        signal_held(runs[0], {"rank 1": signal.SIGKILL})
        assert runs[0].wait(timeout=120) not in (0, 128 + signal.SIGTERM)
        first_log = logs[0].read_text()
        assert "DistributedError: workflow_scripts.pretrain: process of rank 1 of 2 failed (killed by SIGKILL)" in (
            first_log), first_log[-4000:]
        assert not out_dir.exists() and not list(tmp_path.glob(".run*")), "a failed run left outputs"
        assert resume_file.exists()
        for pid in ranks.values():  # gone, or a zombie waiting for its reaper
            stat = Path(f"/proc/{pid}/stat")
            assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z", pid

        runs.append(start_run(args, logs[1]))
        resumed = re.compile(rf"resumed from {re.escape(str(resume_file))} at step (\d+)")
        wait_for(lambda: resumed.search(logs[1].read_text()), runs[1], logs[1], "the resumed run")
        first_step = int(resumed.search(logs[1].read_text()).group(1))
        assert first_step > 0
        written = re.compile(r"step (\d+): resume file .* written")
        wait_for(lambda: any(int(n) > first_step for n in written.findall(logs[1].read_text())), runs[1],
                 logs[1], "a resume file of the resumed run")
        signal_held(runs[1], {"launcher": signal.SIGTERM, "rank 0": signal.SIGTERM, "rank 1": signal.SIGTERM})
        assert runs[1].wait(timeout=120) == 128 + signal.SIGTERM, logs[1].read_text()[-4000:]
        second_log = logs[1].read_text()
        stopped = re.findall(r"SIGTERM: stopped after step (\d+); run again to continue from (\S+)", second_log)
        assert len(stopped) == 1 and stopped[0][1] == str(resume_file), second_log[-4000:]
        stop_step = int(stopped[0][0])
        assert first_step < stop_step < 40 and not out_dir.exists()
        assert re.search(rf"\[rank 1\].* SIGTERM: stopped after step {stop_step}\b", second_log), second_log[-4000:]

        at = args.index("--processes")
        one_process = args[:at] + args[at + 2 :]
        runs.append(start_run(one_process, logs[2]))  # the file of two processes, continued by one
        assert runs[2].wait(timeout=240) == 0, logs[2].read_text()[-4000:]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait()
    assert resumed.search(logs[2].read_text()).group(1) == str(stop_step)
    assert "data-parallel" not in logs[2].read_text()
    assert list(history(out_dir)["step"]) == [0, 10, 20, 30, 40] and not resume_file.exists()


def test_a_resume_file_of_one_process_continues_on_two(pool, tmp_path):
    """The resume file holds the same state whatever the number of processes: one process's
    step-3 file (kept here: the step removes it once its outputs are written) is continued by
    two, whose curve is that of the uninterrupted run."""
    resume_file = tmp_path / "run.resume.pt"
    keep_resume = ("import sys, workflow_scripts.pretrain as step; step.remove_resume = lambda path: None;"
                   " step.main(sys.argv[1:])")
    one = subprocess.run([sys.executable, "-c", keep_resume,
                          *pretrain_args(pool, tmp_path / "one", "--resume-file", str(resume_file), "--resume-every",
                                         "3")], cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert one.returncode == 0, one.stderr[-4000:]
    assert torch.load(resume_file, weights_only=False)["loop"]["step"] == 3

    two = run_pretrain(pretrain_args(pool, tmp_path / "two", "--processes", "2", "--resume-file", str(resume_file)))
    assert two.returncode == 0, two.stderr[-4000:]
    assert f"resumed from {resume_file} at step 3" in two.stderr
    assert "data-parallel over 2 processes" in two.stderr and not resume_file.exists()
    resumed, straight = history(tmp_path / "two"), history(tmp_path / "one")
    pd.testing.assert_frame_equal(resumed.iloc[:4], straight.iloc[:4], check_exact=True)  # from the file
    assert list(resumed["step"]) == list(straight["step"]) and list(resumed["best"]) == list(straight["best"])
    for column in ("train_loss", "val_si_sdri_db"):
        difference_db = np.nanmax(np.abs(resumed[column] - straight[column]))
        assert difference_db <= TOLERANCE_DB, (column, difference_db)
