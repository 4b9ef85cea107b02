"""A disk that fills up midway through a write: every atomic writer (audio, 16-bit PCM, text, torch
files, folders) fails naming the output and the cause, and leaves neither the output nor a temporary
file behind; a finished file of the same name is left as it was."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from workflow_scripts.files.audio import (
    atomic_dir,
    atomic_path,
    atomic_write_text,
    staging_dir,
    write_audio,
    write_pcm16,
)
from workflow_scripts.files.checkpoints import save_torch
from workflow_scripts.model.convtasnet import build_model, save_checkpoint
from workflow_scripts.training.resume import ResumeFile, run_fingerprint
from workflow_scripts.tts.voice import write_voice

NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device"


@pytest.fixture
def disk_with_room(monkeypatch):
    """disk_with_room(n): from then on os.write behaves as on a disk with n bytes free: it writes
    what fits, then fails with ENOSPC; returns a function giving the bytes written so far."""
    real_write = os.write

    def fill_after(room: int):
        written = [0]

        def write(fd, data):
            left = room - written[0]
            if left <= 0:
                raise OSError(errno.ENOSPC, NO_SPACE)
            count = real_write(fd, memoryview(data)[:left])
            written[0] += count
            return count

        monkeypatch.setattr(os, "write", write)
        return lambda: written[0]

    return fill_after


def assert_nothing_left(folder: Path, expected: set[str] = frozenset()) -> None:
    """Only the files `expected` in `folder`: no output, no temporary `.*.tmp*` file."""
    assert {p.name for p in folder.iterdir()} == set(expected)


def assert_names_output_and_cause(error: pytest.ExceptionInfo, output: Path) -> None:
    assert error.value.errno == errno.ENOSPC
    assert f"{output}: not written: {NO_SPACE}" in str(error.value)


def tiny_model():
    torch.manual_seed(0)
    return build_model("tiny")


def resume_save(path: Path) -> None:
    model = tiny_model()
    resume = ResumeFile(path, "single", run_fingerprint({"lr": 1e-3}, model, []), 1, "cpu")
    resume.save(3, {"model": model.state_dict()})


WRITERS = {
    "wav": lambda path: write_audio(path, np.full(16000, 0.1, np.float32)),
    "pcm16": lambda path: write_pcm16(path, np.full(16000, 0.1, np.float32)),
    "text": lambda path: atomic_write_text(path, "step,train_loss\n" * 1000),
    "torch": lambda path: save_torch({"weights": torch.ones(4000)}, path),
    "model.pt": lambda path: save_checkpoint(path, tiny_model()),
    "resume": resume_save,
    "voice": lambda path: write_voice({"backend": "x", "options": {}, "conditioning": torch.ones(4000)}, path),
}


@pytest.mark.parametrize("writer", WRITERS.values(), ids=WRITERS.keys())
def test_a_write_that_fills_the_disk_leaves_nothing_and_names_the_output(tmp_path, disk_with_room, writer):
    output = tmp_path / "out.bin"
    written = disk_with_room(1000)
    with pytest.raises(OSError) as error:
        writer(output)
    assert written() == 1000, "the write did not fail midway"
    assert_names_output_and_cause(error, output)
    assert_nothing_left(tmp_path)


@pytest.mark.parametrize("writer", WRITERS.values(), ids=WRITERS.keys())
def test_a_finished_file_is_kept_when_its_rewrite_fills_the_disk(tmp_path, disk_with_room, writer):
    output = tmp_path / "out.bin"
    writer(output)
    before = output.read_bytes()
    disk_with_room(100)
    with pytest.raises(OSError, match=NO_SPACE):
        writer(output)
    assert output.read_bytes() == before
    assert_nothing_left(tmp_path, {"out.bin"})


@pytest.mark.parametrize("folder_writer", [atomic_dir, staging_dir], ids=["atomic_dir", "staging_dir"])
def test_a_folder_whose_file_fills_the_disk_is_named_and_removed(tmp_path, disk_with_room, folder_writer):
    disk_with_room(5000)
    output = tmp_path / "run"
    with pytest.raises(OSError) as error, folder_writer(output) as folder:
        atomic_write_text(folder / "config.yaml", "seed: 0\n")
        save_checkpoint(folder / "model.pt", tiny_model())
    assert_names_output_and_cause(error, output)
    assert "model.pt: not written" in str(error.value.__cause__)
    assert_nothing_left(tmp_path)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_any_writer_inside_atomic_path_reports_a_full_disk_or_quota(tmp_path, code):
    # writers that write the file themselves (pandas, matplotlib) fail with the OSError of the
    # system call: atomic_path names the output all the same
    output = tmp_path / "table.csv"
    with pytest.raises(OSError) as error, atomic_path(output) as tmp:
        tmp.write_text("partial")
        raise OSError(code, os.strerror(code))
    assert error.value.errno == code and f"{output}: not written: {os.strerror(code)}" in str(error.value)
    assert_nothing_left(tmp_path)


def test_other_errors_inside_atomic_path_pass_through_unchanged(tmp_path):
    # an input missing while an output is written is the input's error, not the output's
    with pytest.raises(FileNotFoundError, match="input.wav"), atomic_path(tmp_path / "out.csv"):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "input.wav")
    assert_nothing_left(tmp_path)
