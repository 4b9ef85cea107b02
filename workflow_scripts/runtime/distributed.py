"""Data-parallel training (DDP): one process per GPU, started and joined through torch.distributed.

A step that can train data-parallel is started as any step, with `--processes N`. `claim_devices`
finds its N GPUs (those a SLURM job was given, or N whole GPUs of the machine, claimed with the
slot files of runtime/gpu.py and held until the step ends) and `launch` then runs N copies of the
same command through torchrun's own launcher (torch.distributed.elastic), each told its place in
the environment as `torchrun` tells it (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT); a
step that `torchrun` started itself runs the same way. When a process fails or is killed, the
launcher stops the others and the step fails; a SIGTERM to the launcher is passed on to every
process (a training loop then stops at the end of its step, see training/resume.py) and the step
ends as they do.

In each process, `join_process_group` gives its `ProcessGroup`: rank, world size, device (the GPU
of its local rank, NCCL; or the CPU, gloo) and the few collectives a training loop needs. `SINGLE`
is the one-process run, whose collectives give back what they are given.
"""

from __future__ import annotations

import datetime
import logging
import os
import signal
import sys
import time
import uuid

import numpy as np

from workflow_scripts.runtime import gpu

log = logging.getLogger(__name__)

LAUNCHER_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
# a process waits this long for the others in a collective (rank 0 validating, say) before failing
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)
SIGTERM_EXIT = 128 + signal.SIGTERM


class DistributedError(RuntimeError):
    """A data-parallel run that cannot start, or one of whose processes failed."""


def started_by_launcher() -> bool:
    """Whether this process is one of a data-parallel run's (torchrun's or `launch`'s)."""
    return all(key in os.environ for key in LAUNCHER_ENV)


def launcher_world_size() -> int | None:
    """WORLD_SIZE of the run this process belongs to, or None outside one."""
    return int(os.environ["WORLD_SIZE"]) if started_by_launcher() else None


def per_process_batch(batch_size: int, processes: int, config_key: str) -> int:
    """The examples each process takes of a global batch of `batch_size`; ValueError unless
    `processes` divides it (naming `config_key`, where the number comes from)."""
    if processes < 1:
        raise ValueError(f"--processes must be at least 1, got {processes}")
    if batch_size % processes:
        divisors = [n for n in range(1, batch_size + 1) if batch_size % n == 0]
        raise ValueError(
            f"--batch-size {batch_size} is the global batch, split evenly over the processes: {processes}"
            f" processes do not divide it; use one of {divisors} ({config_key})"
        )
    return batch_size // processes


# ---- the launching process ---------------------------------------------------------------------


def claim_devices(device: str, processes: int) -> str | None:
    """The device kind for `processes` data-parallel processes: "cuda" once `processes` GPUs are
    claimed (CUDA_VISIBLE_DEVICES set to them), "cpu" for `--device cpu` (gloo processes), or None
    when `device` is "auto" and there is no GPU (the step then trains in one process on the CPU)."""
    if device == "cpu":
        return "cpu"
    if device not in ("auto", "cuda"):
        raise DistributedError(
            f"--device {device} with --processes {processes}: use --device cuda or auto (each process"
            " takes one GPU) or --device cpu"
        )
    gpus = claim_gpus(processes)
    if gpus:
        return "cuda"
    if device == "cuda":
        raise DistributedError(f"--device cuda with --processes {processes}: no GPU visible")
    return None


def claim_gpus(count: int, timeout_s: float | None = None) -> list[str]:
    """`count` GPUs for this process and its children, CUDA_VISIBLE_DEVICES set to them: in a SLURM
    job, those it was given; elsewhere every slot (runtime/gpu.py) of `count` GPUs, waiting while
    they are taken. [] when no GPU is visible; DistributedError when fewer than `count` are."""
    in_slurm_job = "SLURM_JOB_ID" in os.environ
    if in_slurm_job and "CUDA_VISIBLE_DEVICES" not in os.environ:
        log.info("SLURM job %s has no GPU allocated", os.environ["SLURM_JOB_ID"])
        return []
    gpus = gpu.visible_gpus()
    if not gpus:
        return []
    if len(gpus) < count:
        where = f"SLURM job {os.environ['SLURM_JOB_ID']} was given" if in_slurm_job else "visible"
        raise DistributedError(f"{count} GPUs asked for (--processes), {len(gpus)} {where}: {','.join(gpus)}")
    if in_slurm_job:
        chosen = gpus[:count]
        log.info("job on GPUs %s (given by SLURM job %s)", ",".join(chosen), os.environ["SLURM_JOB_ID"])
    else:
        chosen = _lock_whole_gpus(gpus, count, timeout_s)
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(chosen)
    return chosen


_held_locks: list = []  # slot files of the GPUs claimed by claim_gpus, held until the process ends


def _lock_whole_gpus(gpus: list[str], count: int, timeout_s: float | None) -> list[str]:
    """Every slot of `count` GPUs, the first free ones in order."""
    jobs_per_gpu = gpu.jobs_per_gpu_from_env()
    lock_dir = gpu.lock_dir_from_env()
    gpu._open_lock_dir(lock_dir)
    start, last_log = time.monotonic(), None
    while True:
        chosen, locks = [], []
        for name in gpus:
            slots = [gpu._try_slot(lock_dir, name, slot) for slot in range(jobs_per_gpu)]
            held = [lock for lock in slots if lock is not None]
            if len(held) == jobs_per_gpu:
                chosen.append(name)
                locks += held
                if len(chosen) == count:
                    _held_locks.extend(locks)
                    log.info("job on GPUs %s (all %d slots of each)", ",".join(chosen), jobs_per_gpu)
                    return chosen
            else:
                for lock in held:
                    lock.close()
        for lock in locks:
            lock.close()
        waited_s = time.monotonic() - start
        if timeout_s is not None and waited_s >= timeout_s:
            raise TimeoutError(f"{count} GPUs with every slot free in {lock_dir}: none for {waited_s:.0f} s")
        if last_log is None or time.monotonic() - last_log >= gpu.WAIT_LOG_EVERY_S:
            log.info("waiting for %d of the %d GPUs to have every slot free (%s)", count, len(gpus), lock_dir)
            last_log = time.monotonic()
        time.sleep(gpu.POLL_S)


def launch(module: str, argv: list[str], processes: int) -> None:
    """Run `python -m module *argv` in `processes` processes of one data-parallel run and wait
    for them. SystemExit(143) when they stopped on a SIGTERM (theirs or this process's);
    DistributedError naming the first process that failed otherwise."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    logging.getLogger("torch.distributed.elastic").setLevel(logging.WARNING)
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=processes, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
                          monitor_interval=0.5)
    log.info("starting %d processes of %s (data-parallel)", processes, module)
    try:
        elastic_launch(config, sys.executable)("-m", module, *argv)
    except SignalException as exc:
        log.warning("%s: the %d processes were stopped", signal.Signals(exc.sigval).name, processes)
        raise SystemExit(128 + exc.sigval) from None
    except ChildFailedError as exc:
        codes = {failure.exitcode for failure in exc.failures.values()}
        if codes <= {SIGTERM_EXIT, -signal.SIGTERM}:  # stopped at the end of a step, or before training
            raise SystemExit(SIGTERM_EXIT) from None
        # the cause first (killed by a signal, then failed), those the launcher stopped last
        failed = sorted(exc.failures.items(), key=lambda item: (
            2 if item[1].exitcode == -signal.SIGTERM else int(item[1].exitcode >= 0), item[0]))
        raise DistributedError(f"{module}: " + ", ".join(
            f"process of rank {rank} of {processes} failed ("
            + (f"killed by {failure.signal_name()}" if failure.exitcode < 0 else f"exit status {failure.exitcode}")
            + ")" for rank, failure in failed) + "; the others were stopped (see the lines above)") from None


# ---- the processes of a run ----------------------------------------------------------------------


class ProcessGroup:
    """One process training alone (`SINGLE`): the collectives of a data-parallel run give back what
    they are given, so a loop written for both runs as it would without them."""

    rank, world_size, local_rank = 0, 1, 0

    @property
    def is_main(self) -> bool:
        """Rank 0: validates, logs, writes the resume file and the outputs."""
        return self.rank == 0

    def wrap(self, model):
        """The module to train (DistributedDataParallel of `model` in a run of several)."""
        return model

    def sum_over_processes(self, values: np.ndarray) -> np.ndarray:
        """Element-wise sum of a small integer array over the processes (from any one thread)."""
        return values

    def mean_and_any(self, loss, flag: bool) -> tuple[float, bool]:
        """(the loss averaged over the processes, as a float; whether any process's flag is set)."""
        return loss.item(), flag

    def rank0_flag(self, flag: bool) -> bool:
        """Rank 0's flag, on every process."""
        return flag

    def rank0_object(self, value):
        """Rank 0's (picklable) value, on every process."""
        return value

    def close(self) -> None:
        pass


SINGLE = ProcessGroup()


class TorchProcessGroup(ProcessGroup):
    """This process's place in a torch.distributed run: NCCL between GPUs (gloo on the CPU) for the
    training, and a gloo group of its own for the data loader's small exchanges (which run in the
    loader's thread, beside the training's collectives)."""

    def __init__(self, device):
        import torch
        import torch.distributed as dist

        self.rank, self.world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        self.local_rank = int(os.environ["LOCAL_RANK"])
        self.device = torch.device(device)
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        options = {"device_id": self.device} if self.device.type == "cuda" else {}
        dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT, **options)
        self._data_group = dist.new_group(backend="gloo", timeout=COLLECTIVE_TIMEOUT)
        self._dist, self._torch = dist, torch

    def wrap(self, model):
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        # static: the same parameters take part in every step (ConvTasNet's last residual
        # convolution in none), which DDP then learns once instead of searching every step
        return DistributedDataParallel(model, device_ids=device_ids, static_graph=True)

    def sum_over_processes(self, values: np.ndarray) -> np.ndarray:
        tensor = self._torch.from_numpy(np.ascontiguousarray(values, dtype=np.int64))
        self._dist.all_reduce(tensor, group=self._data_group)
        return tensor.numpy()

    def mean_and_any(self, loss, flag: bool) -> tuple[float, bool]:
        both = self._torch.stack([loss.detach().double(), loss.new_tensor(float(flag), dtype=self._torch.float64)])
        self._dist.all_reduce(both)
        total, flags = both.tolist()
        return total / self.world_size, flags > 0

    def rank0_flag(self, flag: bool) -> bool:
        tensor = self._torch.tensor([int(flag)], device=self.device)
        self._dist.broadcast(tensor, src=0)
        return bool(tensor.item())

    def rank0_object(self, value):
        box = [value if self.is_main else None]
        self._dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def close(self) -> None:
        if self._dist.is_initialized():
            self._dist.destroy_process_group()


def join_process_group(device: str) -> TorchProcessGroup:
    """This process's group in the run that launched it: its device is the GPU of its local rank
    (`device` "auto" or "cuda", where CUDA works) or the CPU. Log lines of ranks other than 0 are
    marked with their rank, and only their warnings and errors are kept."""
    import torch

    local_rank, world_size = int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"])
    if device.startswith("cuda:") and world_size > 1:
        raise DistributedError(f"--device {device} in a run of {world_size} processes: use --device cuda"
                               " (each process takes the GPU of its local rank)")
    use_gpu = device != "cpu" and torch.cuda.is_available()
    if device.startswith("cuda") and not use_gpu:
        raise DistributedError(f"--device {device}: torch cannot use CUDA here")
    if use_gpu:
        if local_rank >= torch.cuda.device_count():
            raise DistributedError(f"local rank {local_rank}: {torch.cuda.device_count()} GPUs visible")
        torch.cuda.set_device(local_rank)
    group = TorchProcessGroup(torch.device("cuda", local_rank) if use_gpu else torch.device("cpu"))
    if not group.is_main:
        root = logging.getLogger()
        root.setLevel(logging.WARNING)
        for handler in root.handlers:
            if handler.formatter is not None and handler.formatter._fmt:
                handler.setFormatter(logging.Formatter(f"[rank {group.rank}] {handler.formatter._fmt}"))
    log.info("rank %d of %d (pid %d) on %s", group.rank, group.world_size, os.getpid(), group.device)
    return group
