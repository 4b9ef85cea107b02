"""Resume files and SIGTERM, for both training loops (one model, or a stack).

With a resume file, a loop writes its whole state (weights, optimiser,
early-stopping bookkeeping, loss history, step, and the random states of
torch, numpy, Python and the crop sampler) every `every` steps, atomically,
and on SIGTERM (a scheduler's time limit or preemption) at the end of the
step under way, then stops (SystemExit 128 + SIGTERM). A run started again
with the same resume file continues from there and ends exactly as an
uninterrupted run would on the same device and thread count (bit-identical
on the CPU). A file written by another kind of loop, or for another recipe,
initial model or data (its fingerprint), is ignored, and the log says what
differs; so is a file that cannot be read (truncated or corrupt): a resume file
is a cache, never a reason to fail.

In data-parallel training every process has a ResumeFile and its SIGTERM
handler; the loop tells `end_of_step` whether any process was sent SIGTERM,
so that all stop after the same step, and only rank 0's has the file's path
(it reads the file, the loop hands its content to the others, and it writes
it). The state is the same whatever the number of processes (the crop
sampler's is that of the whole batch), so a run may continue on another.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import signal
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Self

import numpy as np
import torch

from workflow_scripts.files.checkpoints import TorchFileError, load_torch, save_torch

log = logging.getLogger(__name__)

RESUME_FORMAT = 3  # 3: the fingerprint keeps the run's settings, to say what differs
KIND_NAMES = {"single": "a single model's training", "stacked": "a stack's training"}


@dataclass(frozen=True)
class RunFingerprint:
    """What a run depends on: its settings (JSON: the recipe and the like, kept as they are so
    that a mismatch can say what differs) and hashes of its initial model and of its audio."""

    settings: dict
    model: str
    audio: str

    @property
    def digest(self) -> str:
        return hashlib.blake2b(json.dumps(asdict(self), sort_keys=True).encode(), digest_size=16).hexdigest()

    def differences(self, saved: dict) -> list[str]:
        """What differs between this run and the fingerprint `saved` in a resume file (asdict of one)."""
        here, there = dict(flat_settings(self.settings)), dict(flat_settings(saved.get("settings", {})))
        found = [f"{key} {there.get(key, 'unset')} in the file, {here.get(key, 'unset')} now"
                 for key in sorted(here.keys() | there.keys()) if here.get(key) != there.get(key)]
        if saved.get("model") != self.model:
            found.append("another initial model")
        if saved.get("audio") != self.audio:
            found.append("other training or validation audio")
        return found


def flat_settings(settings, prefix: str = ""):
    """(dotted key, value) of nested settings: {"recipe": {"lr": 1e-3}} -> ("recipe.lr", 0.001)."""
    if isinstance(settings, dict):
        for key, value in settings.items():
            yield from flat_settings(value, f"{prefix}{key}.")
    elif isinstance(settings, list) and any(isinstance(value, dict | list) for value in settings):
        for index, value in enumerate(settings):
            yield from flat_settings(value, f"{prefix.rstrip('.')}[{index}].")
    else:
        yield prefix.rstrip(".") or "settings", settings


def run_fingerprint(settings, model: torch.nn.Module, signal_groups) -> RunFingerprint:
    """What a run depends on: its settings (JSON-able), the initial model's weights and each
    group of audio in order (arrays, or signals on disk by their own `fingerprint()`); a
    resume file is used only by a run of the same fingerprint."""
    weights = hashlib.blake2b(digest_size=16)
    for key, value in model.state_dict().items():
        weights.update(key.encode())
        weights.update(value.detach().cpu().contiguous().numpy().tobytes())
    audio = hashlib.blake2b(digest_size=16)
    for signals in signal_groups:
        if hasattr(signals, "fingerprint"):
            audio.update(signals.fingerprint())
            continue
        audio.update(str(len(signals)).encode())
        for signal_array in signals:
            audio.update(np.ascontiguousarray(signal_array).tobytes())
    # through JSON, as the file keeps them: tuples become lists, keys strings
    return RunFingerprint(json.loads(json.dumps(settings, sort_keys=True)), weights.hexdigest(), audio.hexdigest())


def random_states(device: torch.device) -> dict:
    """The global random states of torch (and CUDA on a GPU: of every visible one, or of
    `device` alone when it names one, as a data-parallel process's does), numpy and Python."""
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if device.type == "cuda" and device.index is None:
        states["torch_cuda"] = torch.cuda.get_rng_state_all()
    elif device.type == "cuda":
        states["torch_cuda_device"] = torch.cuda.get_rng_state(device)
    return states


def restore_random_states(states: dict, device: torch.device) -> None:
    """What random_states saved. A CUDA state of one GPU is restored on `device` (a file of
    every visible GPU's gives its first there; a file of one GPU's sets the current one)."""
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if device.type != "cuda":
        return
    if device.index is None and "torch_cuda" in states:
        torch.cuda.set_rng_state_all(states["torch_cuda"][: torch.cuda.device_count()])
        return
    one = states.get("torch_cuda_device", (states.get("torch_cuda") or [None])[0])
    if one is not None:
        torch.cuda.set_rng_state(one, "cuda" if device.index is None else device)


def remove_resume(path: str | Path | None) -> None:
    """Delete the resume file once the final outputs are written."""
    if path is not None and Path(path).exists():
        Path(path).unlink()
        log.info("removed resume file %s", path)


class ResumeFile:
    """A loop's resume file (`path` None: none) and its SIGTERM handler, for the
    loop's duration (a context manager).

    `load()` gives the state saved for this very run, or None; `end_of_step`
    writes the file when it is due and stops the run after a SIGTERM."""

    def __init__(self, path: str | Path | None, kind: str, fingerprint: RunFingerprint | None, every: int,
                 device) -> None:
        if kind not in KIND_NAMES:
            raise ValueError(f"unknown kind of resume file {kind!r}")
        if every < 1:
            raise ValueError(f"resume_every must be at least 1, got {every}")
        if path is not None and not isinstance(fingerprint, RunFingerprint):
            raise ValueError(f"a resume file needs the run's fingerprint (run_fingerprint), got {fingerprint!r}")
        self.path = None if path is None else Path(path)
        self.kind, self.fingerprint, self.every = kind, fingerprint, every
        self.device = torch.device(device)
        self.stop_requested = False
        self._previous = None

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.stop_requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def load(self) -> dict | None:
        """The saved state when the file holds one of this very run (the random states
        restored), else None (and why, logged: an unreadable file, or what differs)."""
        path = self.path
        if path is None or not path.is_file():
            return None
        try:
            state = load_torch(path, "resume file")
        except TorchFileError as exc:  # a resume file is a cache: never fail on it
            log.warning("%s: unreadable resume file (truncated or corrupt: %s); ignored, starting from step 0"
                        " (it is overwritten by the next one)", path, exc.cause)
            return None
        if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
            log.warning("%s: not a resume file of this version; starting from step 0", path)
            return None
        if state.get("kind") != self.kind:
            log.warning("%s: a resume file of %s, not of %s; starting from step 0", path,
                        KIND_NAMES.get(state.get("kind"), "another kind"), KIND_NAMES[self.kind])
            return None
        saved = state.get("fingerprint")
        if not isinstance(saved, dict) or saved.get("digest") != self.fingerprint.digest:
            differences = self.fingerprint.differences(saved if isinstance(saved, dict) else {})
            log.warning("%s: resume file of another run (%s); ignored, starting from step 0", path,
                        "; ".join(differences) or "another run")
            return None
        restore_random_states(state["random"], self.device)
        return state

    def save(self, step: int, state: dict) -> None:
        """`state` (the loop's parts) and the random states, written under a temporary name and renamed."""
        fingerprint = {**asdict(self.fingerprint), "digest": self.fingerprint.digest}
        full = {"format": RESUME_FORMAT, "kind": self.kind, "fingerprint": fingerprint, **state,
                "random": random_states(self.device)}
        save_torch(full, self.path)
        log.info("step %d: resume file %s written", step, self.path)

    def end_of_step(self, step: int, max_steps: int, state: Callable[[], dict],
                    stop_requested: bool | None = None) -> None:
        """After `step`: the file written when due (every `every` steps, or after a
        SIGTERM; not after the last step), then SystemExit after a SIGTERM.
        `stop_requested`: whether any process of the run was sent SIGTERM (None: this one)."""
        if step >= max_steps:
            return
        stop_requested = self.stop_requested if stop_requested is None else stop_requested
        if self.path is not None and (step % self.every == 0 or stop_requested):
            self.save(step, state())
        if stop_requested:
            log.warning("SIGTERM: stopped after step %d%s", step,
                        f"; run again to continue from {self.path}" if self.path is not None else "")
            raise SystemExit(128 + signal.SIGTERM)
