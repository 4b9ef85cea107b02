"""Which GPU a job uses: one free GPU slot per process, claimed with a file lock.

Snakemake counts GPU jobs (rules declare `resources: gpu=1`, a run limits
them with `--resources gpu=N`) but does not say which GPU each one should
use, so on a workstation every job would land on GPU 0. `claim_gpu()` takes
a free slot among the visible GPUs, at most `jobs_per_gpu` jobs per GPU
(env GENDA_JOBS_PER_GPU, default 1), and sets CUDA_VISIBLE_DEVICES for this
process to that GPU. A slot is a file in a lock folder (env
GENDA_GPU_LOCK_DIR, default /tmp/genda-pse-gpus) held with `flock`: the
kernel releases it when the process ends, however it ends, so a killed job
never keeps its GPU. When every slot is taken the job waits for one.

The visible GPUs are those of CUDA_VISIBLE_DEVICES when it is set (as SLURM
sets it for a job given `--gpus`), otherwise those `nvidia-smi -L` lists
(or, without nvidia-smi, the NVIDIA driver).
Inside a SLURM job the scheduler's single GPU is used as it is, and a job
given no GPU runs on the CPU. Counting never initialises CUDA in this
process: the claim has to come before CUDA starts, for CUDA_VISIBLE_DEVICES
is read only then.

`resolve_device("auto")` is what every step's `--device auto` goes through.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_DIR_ENV = "GENDA_GPU_LOCK_DIR"
JOBS_PER_GPU_ENV = "GENDA_JOBS_PER_GPU"
STACK_SLOTS_ENV = "GENDA_STACK_SLOTS"
DEFAULT_LOCK_DIR = "/tmp/genda-pse-gpus"
POLL_S = 1.0  # how often a waiting job tries the slots again
WAIT_LOG_EVERY_S = 300.0


@dataclass
class GpuClaim:
    gpu: str  # the device as CUDA_VISIBLE_DEVICES names it (index or UUID)
    slot: int  # which of the GPU's `jobs_per_gpu` slots; -1 when a scheduler chose the GPU
    lock_files: tuple = ()  # the open, locked slot files (several for a claim of several slots)


_claim: GpuClaim | None = None  # this process's claim, held until it ends


def jobs_per_gpu_from_env() -> int:
    value = os.environ.get(JOBS_PER_GPU_ENV, "1")
    try:
        jobs = int(value)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise ValueError(f"{JOBS_PER_GPU_ENV}={value!r}: must be a whole number >= 1")
    return jobs


def stack_slots_from_env(jobs_per_gpu: int | None = None) -> int:
    """How many of a GPU's GENDA_JOBS_PER_GPU slots a stacked fine-tune claims: GENDA_STACK_SLOTS,
    more than half of them so that two stacks never share a GPU. By default one slot is left
    beside the stack where the GPU has three or more (scoring and evaluation run there while
    it trains: bench/RESULTS.md, "GPU sharing"), and the stack takes the whole GPU where it has
    one or two."""
    jobs_per_gpu = jobs_per_gpu_from_env() if jobs_per_gpu is None else jobs_per_gpu
    value = os.environ.get(STACK_SLOTS_ENV, str(max(jobs_per_gpu - 1, jobs_per_gpu // 2 + 1)))
    try:
        slots = int(value)
    except ValueError:
        slots = 0
    if not jobs_per_gpu // 2 < slots <= jobs_per_gpu:
        raise ValueError(
            f"{STACK_SLOTS_ENV}={value!r}: must be a whole number above half of {JOBS_PER_GPU_ENV}={jobs_per_gpu}"
            f" and at most it ({jobs_per_gpu // 2 + 1}-{jobs_per_gpu}), so that two stacks never share a GPU"
        )
    return slots


def count_gpus() -> int:
    """GPUs on this machine, counted without initialising CUDA in this process:
    `nvidia-smi -L`, else the NVIDIA driver's own list (/proc/driver/nvidia/gpus, /dev/nvidiaN)."""
    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi:
        try:
            listing = subprocess.run(
                [nvidia_smi, "-L"], check=False, capture_output=True, text=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("nvidia-smi -L failed (%s): using no GPU", exc)
            return 0
        if listing.returncode != 0:
            log.info("nvidia-smi -L found no usable GPU (exit %d)", listing.returncode)
            return 0
        return sum(1 for line in listing.stdout.splitlines() if line.startswith("GPU "))
    driver_list = Path("/proc/driver/nvidia/gpus")
    if driver_list.is_dir():
        return sum(1 for _ in driver_list.iterdir())
    return sum(1 for device in Path("/dev").glob("nvidia*") if re.fullmatch(r"nvidia\d+", device.name))


def visible_gpus(num_gpus: int | None = None) -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        names = []
        for name in os.environ["CUDA_VISIBLE_DEVICES"].split(","):
            name = name.strip()
            if not name or name.startswith("-"):  # CUDA stops at the first invalid entry
                break
            names.append(name)
        return names
    return [str(k) for k in range(count_gpus() if num_gpus is None else num_gpus)]


def gpu_slots(no_gpu: int = 10000) -> int:
    """How many GPU jobs may run at once on this machine: the visible GPUs times
    GENDA_JOBS_PER_GPU, or `no_gpu` when there is no GPU (those jobs then run on the
    CPU). The local profile (profiles/default) limits snakemake's `gpu` resource to it."""
    gpus = len(visible_gpus())
    return gpus * jobs_per_gpu_from_env() if gpus else no_gpu


def lock_dir_from_env() -> Path:
    lock_dir = Path(os.environ.get(LOCK_DIR_ENV, DEFAULT_LOCK_DIR))
    # GPU numbers are per SLURM job where its cgroup hides the other GPUs: keep its slots apart
    if "SLURM_JOB_ID" in os.environ:
        lock_dir = lock_dir / f"slurm-{os.environ['SLURM_JOB_ID']}"
    return lock_dir


def _open_lock_dir(lock_dir: Path) -> None:
    """The lock folder, usable by every user of the machine (like /tmp)."""
    if not lock_dir.is_dir():
        lock_dir.mkdir(parents=True, exist_ok=True)
        try:
            os.chmod(lock_dir, 0o1777)
        except PermissionError:
            pass


def _try_slot(lock_dir: Path, gpu: str, slot: int):
    """The locked slot file, or None when another process holds it."""
    path = lock_dir / f"gpu{re.sub(r'[^A-Za-z0-9_.-]', '_', gpu)}.slot{slot}.lock"
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
    lock_file = os.fdopen(fd, "rb")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.close()
        return None
    return lock_file


def _warn_if_cuda_started() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        log.warning("CUDA was initialised before the GPU claim: CUDA_VISIBLE_DEVICES has no effect now")


def claim_gpu(
    num_gpus: int | None = None,
    jobs_per_gpu: int | None = None,
    lock_dir: str | os.PathLike | None = None,
    timeout_s: float | None = None,
    slots: int = 1,
) -> GpuClaim | None:
    """Claim `slots` slots of one GPU for this process and point CUDA_VISIBLE_DEVICES at it.

    Returns None when there is no GPU. Waits while no GPU has that many free slots (at
    most `timeout_s`, then TimeoutError). A second call returns the first claim.
    `num_gpus`, `jobs_per_gpu` and `lock_dir` default to the machine's GPU count and the
    environment. A job that fills much of a GPU by itself claims several slots, all of
    them (`slots` = `jobs_per_gpu`) when it only loses by sharing the GPU.
    """
    global _claim
    if _claim is not None:
        return _claim
    in_slurm_job = "SLURM_JOB_ID" in os.environ
    if in_slurm_job and "CUDA_VISIBLE_DEVICES" not in os.environ:
        log.info("SLURM job %s has no GPU allocated: job on CPU", os.environ["SLURM_JOB_ID"])
        return None
    gpus = visible_gpus(num_gpus)
    if not gpus:
        log.info("no GPU visible: job on CPU")
        return None
    if in_slurm_job and len(gpus) == 1:
        _claim = GpuClaim(gpu=gpus[0], slot=-1)
        log.info("job on GPU %s (given by SLURM job %s)", gpus[0], os.environ["SLURM_JOB_ID"])
        return _claim
    jobs_per_gpu = jobs_per_gpu_from_env() if jobs_per_gpu is None else jobs_per_gpu
    if not 1 <= slots <= jobs_per_gpu:
        raise ValueError(f"cannot claim {slots} slots of a GPU that has {jobs_per_gpu} ({JOBS_PER_GPU_ENV})")
    lock_dir = lock_dir_from_env() if lock_dir is None else Path(lock_dir)
    _open_lock_dir(lock_dir)
    start = time.monotonic()
    last_log = None
    while True:
        _claim = _try_one_slot(lock_dir, gpus, jobs_per_gpu) if slots == 1 else \
            _try_slots(lock_dir, gpus, jobs_per_gpu, slots)
        if _claim is not None:
            return _claim
        waited_s = time.monotonic() - start
        wanted = "a free slot" if slots == 1 else f"a GPU with {slots} free slots"
        if timeout_s is not None and waited_s >= timeout_s:
            taken = f"all {len(gpus) * jobs_per_gpu} GPU slots" if slots == 1 else "too many slots of every GPU"
            raise TimeoutError(f"{taken} in {lock_dir} stayed taken for {waited_s:.0f} s (waiting for {wanted})")
        if last_log is None or time.monotonic() - last_log >= WAIT_LOG_EVERY_S:
            log.info("GPU slots taken (%d GPUs x %d jobs); waiting for %s (%s)", len(gpus), jobs_per_gpu, wanted,
                     lock_dir)
            last_log = time.monotonic()
        time.sleep(POLL_S)


def _try_one_slot(lock_dir: Path, gpus: list[str], jobs_per_gpu: int) -> GpuClaim | None:
    """A free slot, or None; the first slot of every GPU before the second of any, so that
    jobs spread over the GPUs."""
    for slot in range(jobs_per_gpu):
        for gpu in gpus:
            lock_file = _try_slot(lock_dir, gpu, slot)
            if lock_file is not None:
                _warn_if_cuda_started()
                os.environ["CUDA_VISIBLE_DEVICES"] = gpu
                log.info("job on GPU %s (slot %d)", gpu, slot)
                return GpuClaim(gpu=gpu, slot=slot, lock_files=(lock_file,))
    return None


def _try_slots(lock_dir: Path, gpus: list[str], jobs_per_gpu: int, count: int) -> GpuClaim | None:
    """`count` free slots of the first GPU that has them, or None."""
    for gpu in gpus:
        locks, taken = [], []
        for slot in range(jobs_per_gpu):
            lock_file = _try_slot(lock_dir, gpu, slot)
            if lock_file is not None:
                locks.append(lock_file)
                taken.append(slot)
                if len(locks) == count:
                    break
        if len(locks) == count:
            _warn_if_cuda_started()
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu
            if count == jobs_per_gpu:
                log.info("job on GPU %s (all %d slots)", gpu, jobs_per_gpu)
            else:
                log.info("job on GPU %s (slots %s of %d)", gpu, ", ".join(map(str, taken)), jobs_per_gpu)
            return GpuClaim(gpu=gpu, slot=taken[0], lock_files=tuple(locks))
        for lock_file in locks:
            lock_file.close()
    return None


def release_gpu() -> None:
    """Give this process's slot(s) back before it ends (they are freed at exit anyway)."""
    global _claim
    if _claim is not None:
        for lock_file in _claim.lock_files:
            lock_file.close()
    _claim = None


def resolve_device(device: str = "auto", slots: int = 1) -> str:
    """The torch device name for `--device`: "auto" and "cuda" claim `slots` slots of one GPU
    first.

    "auto" gives "cuda" when a GPU was claimed and CUDA works, else "cpu";
    "cpu" and "cuda:N" are used as given, without a claim.
    """
    if device not in ("auto", "cuda"):
        return device
    claim = claim_gpu(slots=slots)
    if device == "cuda":
        return "cuda"
    import torch

    if claim is not None and torch.cuda.is_available():
        return "cuda"
    if claim is not None:
        log.warning("GPU %s visible but torch cannot use CUDA: job on CPU", claim.gpu)
        release_gpu()
    return "cpu"
