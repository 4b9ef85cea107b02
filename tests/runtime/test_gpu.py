"""The local GPU picker, with fake GPU counts: separate processes never share a slot,
and a slot is free again when its process dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from workflow_scripts.runtime import gpu

REPO = Path(__file__).resolve().parents[2]

# a job: claims a slot, reports it, then holds it until killed or stdin closes
HOLDER = """
import json, logging, os, sys
logging.basicConfig(level=logging.INFO)
from workflow_scripts.runtime.gpu import claim_gpu
claim = claim_gpu(num_gpus=int(sys.argv[1]), timeout_s=float(sys.argv[2]), slots=int(sys.argv[3]))
print(json.dumps(None if claim is None else
      {"gpu": claim.gpu, "slot": claim.slot, "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}),
      flush=True)
sys.stdin.read()
"""


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A clean environment for the jobs: own lock folder, no scheduler variables."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "CUDA_", "GENDA_"))}
    environment.update(GENDA_GPU_LOCK_DIR=str(tmp_path / "locks"), PYTHONPATH=str(REPO))
    for key in list(os.environ):
        if key.startswith(("SLURM_", "GENDA_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("GENDA_GPU_LOCK_DIR", str(tmp_path / "locks"))
    # a claim in this process sets CUDA_VISIBLE_DEVICES: put it back as it was
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    yield environment
    gpu.release_gpu()


class Job:
    def __init__(self, environment: dict, num_gpus: int, timeout_s: float = 30.0, slots: int = 1):
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(num_gpus), str(timeout_s), str(slots)],
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            self.claim, self.stderr = "failed", self.process.stderr.read()
        else:
            self.claim, self.stderr = json.loads(line), ""

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def end(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait()


def test_jobs_never_share_a_slot_and_a_dead_job_frees_its_slot(env):
    first, second = Job(env, num_gpus=2), Job(env, num_gpus=2)
    try:
        assert first.claim == {"gpu": "0", "slot": 0, "cuda_visible_devices": "0"}
        assert second.claim == {"gpu": "1", "slot": 0, "cuda_visible_devices": "1"}
        third = Job(env, num_gpus=2, timeout_s=1.5)
        assert third.claim == "failed" and "all 2 GPU slots" in third.stderr
        first.kill()
        fourth = Job(env, num_gpus=2)
        assert fourth.claim == {"gpu": "0", "slot": 0, "cuda_visible_devices": "0"}
        fourth.end()
    finally:
        first.end()
        second.end()


def test_several_jobs_per_gpu_spread_over_the_gpus_first(env):
    env["GENDA_JOBS_PER_GPU"] = "2"
    jobs = [Job(env, num_gpus=2) for _ in range(4)]
    try:
        claims = [(job.claim["gpu"], job.claim["slot"]) for job in jobs]
        assert claims == [("0", 0), ("1", 0), ("0", 1), ("1", 1)]
        assert "job on GPU 1 (slot 1)" in jobs[3].process.stderr.readline()
    finally:
        for job in jobs:
            job.end()


def test_a_whole_gpu_claim_takes_every_slot_of_one_gpu(env):
    env["GENDA_JOBS_PER_GPU"] = "2"
    single = Job(env, num_gpus=2)
    stack = Job(env, num_gpus=2, slots=2)
    try:
        assert (single.claim["gpu"], single.claim["slot"]) == ("0", 0)
        assert stack.claim == {"gpu": "1", "slot": 0, "cuda_visible_devices": "1"}  # GPU 0 is partly taken
        assert "job on GPU 1 (all 2 slots)" in stack.process.stderr.readline()
        second = Job(env, num_gpus=2)
        assert (second.claim["gpu"], second.claim["slot"]) == ("0", 1)  # GPU 1 has no free slot
        waiting = Job(env, num_gpus=2, timeout_s=1.5, slots=2)
        assert waiting.claim == "failed" and "waiting for a GPU with 2 free slots" in waiting.stderr
        stack.kill()
        again = Job(env, num_gpus=2, slots=2)
        assert again.claim["gpu"] == "1"
        again.end()
        second.end()
    finally:
        single.end()
        stack.end()


def test_a_stack_leaves_the_slots_beside_it_to_single_jobs_and_never_shares_with_a_stack(env):
    env["GENDA_JOBS_PER_GPU"] = "4"
    single = Job(env, num_gpus=1)
    stack = Job(env, num_gpus=1, slots=3)
    try:
        assert (single.claim["slot"], stack.claim["slot"]) == (0, 1)
        assert "job on GPU 0 (slots 1, 2, 3 of 4)" in stack.process.stderr.readline()
        waiting = Job(env, num_gpus=1, timeout_s=1.5)  # the stack and the single job hold all four
        assert waiting.claim == "failed" and "all 4 GPU slots" in waiting.stderr
        single.kill()
        beside = Job(env, num_gpus=1)  # the slot the stack leaves
        assert beside.claim["slot"] == 0
        second_stack = Job(env, num_gpus=1, timeout_s=1.5, slots=3)
        assert second_stack.claim == "failed" and "waiting for a GPU with 3 free slots" in second_stack.stderr
        beside.end()
    finally:
        single.end()
        stack.end()


@pytest.mark.parametrize("value", ["2", "5", "0", "three"])
def test_stack_slots_must_be_more_than_half_of_the_slots(monkeypatch, value):
    monkeypatch.setenv("GENDA_JOBS_PER_GPU", "4")
    monkeypatch.setenv("GENDA_STACK_SLOTS", value)
    with pytest.raises(ValueError, match=r"GENDA_STACK_SLOTS=.*above half of GENDA_JOBS_PER_GPU=4.*\(3-4\)"):
        gpu.stack_slots_from_env()


@pytest.mark.parametrize("jobs_per_gpu, default", [(1, 1), (2, 2), (3, 2), (4, 3), (8, 7)])
def test_a_stack_leaves_one_slot_by_default_where_the_gpu_has_three_or_more(monkeypatch, jobs_per_gpu, default):
    monkeypatch.delenv("GENDA_STACK_SLOTS", raising=False)
    monkeypatch.setenv("GENDA_JOBS_PER_GPU", str(jobs_per_gpu))
    assert gpu.stack_slots_from_env() == default
    monkeypatch.setenv("GENDA_STACK_SLOTS", str(jobs_per_gpu))  # the whole GPU, asked for
    assert gpu.stack_slots_from_env() == jobs_per_gpu


def test_picks_among_the_gpus_cuda_visible_devices_names(env):
    env["CUDA_VISIBLE_DEVICES"] = "3,GPU-5f1e"
    first, second = Job(env, num_gpus=8), Job(env, num_gpus=8)
    try:
        assert first.claim["cuda_visible_devices"] == "3"
        assert second.claim["cuda_visible_devices"] == "GPU-5f1e"
    finally:
        first.end()
        second.end()


def test_slurm_choice_is_kept_and_a_slurm_job_without_gpu_gets_none(env):
    env.update(SLURM_JOB_ID="42", CUDA_VISIBLE_DEVICES="0")
    jobs = [Job(env, num_gpus=1) for _ in range(2)]  # a scheduler's choice is never waited for
    try:
        assert [job.claim for job in jobs] == [{"gpu": "0", "slot": -1, "cuda_visible_devices": "0"}] * 2
    finally:
        for job in jobs:
            job.end()
    del env["CUDA_VISIBLE_DEVICES"]
    job = Job(env, num_gpus=2)
    assert job.claim is None
    job.end()


def test_no_gpu_means_cpu(env, monkeypatch):
    job = Job(env, num_gpus=0)
    assert job.claim is None
    job.end()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu.claim_gpu(num_gpus=4) is None


def test_count_gpus_reads_nvidia_smi(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        "echo 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaa)'\n"
        "echo '  MIG 1g.10gb     Device  0: (UUID: MIG-bbbb)'\n"
        "echo 'GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-cccc)'\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    assert gpu.count_gpus() == 2
    fake.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    assert gpu.count_gpus() == 0


def test_auto_device_on_a_torch_without_cuda_gives_the_slot_back(env, monkeypatch, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    monkeypatch.setattr(gpu, "count_gpus", lambda: 1)
    assert gpu.resolve_device("auto") == "cpu"
    assert gpu._claim is None
    assert gpu.resolve_device("cpu") == "cpu" and gpu.resolve_device("cuda:1") == "cuda:1"


def test_bad_jobs_per_gpu_is_named(monkeypatch):
    monkeypatch.setenv("GENDA_JOBS_PER_GPU", "0")
    with pytest.raises(ValueError, match="GENDA_JOBS_PER_GPU='0'"):
        gpu.jobs_per_gpu_from_env()


def local_profile_resources(monkeypatch, path: str, **environment) -> dict:
    import yte

    monkeypatch.setenv("PATH", path)
    for key in ("CUDA_VISIBLE_DEVICES", "GENDA_JOBS_PER_GPU"):
        monkeypatch.delenv(key, raising=False)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    with open(REPO / "profiles" / "default" / "config.yaml") as profile:
        return yte.process_yaml(profile, require_use_yte=True)["resources"]


def test_local_profile_limits_gpu_jobs_to_the_gpu_slots(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n" + "".join(f"echo 'GPU {k}: H100 (UUID: GPU-{k})'\n" for k in range(3)))
    fake.chmod(0o755)
    with_gpus = f"{fake.parent}{os.pathsep}{os.environ['PATH']}"
    assert local_profile_resources(monkeypatch, with_gpus) == {"gpu": 3}
    assert local_profile_resources(monkeypatch, with_gpus, GENDA_JOBS_PER_GPU="2") == {"gpu": 6}
    assert local_profile_resources(monkeypatch, with_gpus, CUDA_VISIBLE_DEVICES="2") == {"gpu": 1}
    # no GPU: GPU-capable jobs run on the CPU, as many at once as the cores allow
    no_gpu = local_profile_resources(monkeypatch, str(tmp_path / "empty"))
    assert no_gpu["gpu"] >= 1000
