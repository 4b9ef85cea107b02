"""What a shared cluster throws at a job, through a step's main(): a disk that fills up while the
outputs are written. The job fails naming the output and the cause, and leaves nothing that looks
finished (no output, no temporary file); its resume file, when it has one, is whole or absent."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_bad_input import assert_no_output, tiny_checkpoint, voiced, write_speech_folder

from workflow_scripts import finetune
from workflow_scripts.files import checkpoints
from workflow_scripts.files.audio import write_audio

NO_SPACE = os.strerror(errno.ENOSPC)


@pytest.fixture
def full_disk(monkeypatch):
    """full_disk(n): os.write as on a disk with n bytes free (it writes what fits, then raises ENOSPC)."""
    real_write = os.write

    def fill_after(room: int) -> None:
        left = [room]

        def write(fd, data):
            if left[0] <= 0:
                raise OSError(errno.ENOSPC, NO_SPACE)
            count = real_write(fd, memoryview(data)[: left[0]])
            left[0] -= count
            return count

        monkeypatch.setattr(os, "write", write)

    return fill_after


def finetune_inputs(tmp_path: Path) -> list[str]:
    speech, noises = tmp_path / "speech", tmp_path / "noises"
    write_speech_folder(speech, 4)
    write_audio(noises / "white.wav", voiced(2.0))
    pd.DataFrame({"noise_id": ["white"], "path": ["white.wav"], "kind": ["white"]}).to_csv(
        noises / "noises.csv", index=False)
    init = tiny_checkpoint(tmp_path / "generalist.pt")
    return ["--init", str(init), "--speech-dir", str(speech), "--num-train", "2", "--num-val", "2",
            "--noise-dir", str(noises), "--batch-size", "2", "--crop-seconds", "0.25", "--max-steps", "2",
            "--val-every", "1", "--device", "cpu"]


def test_finetune_on_a_full_disk_names_its_output_and_leaves_nothing(tmp_path, full_disk, one_thread):
    args = finetune_inputs(tmp_path)
    out_dir = tmp_path / "finetune" / "spk"
    full_disk(1000)
    with pytest.raises(OSError) as error:
        finetune.main([*args, "--out-dir", str(out_dir)])
    assert error.value.errno == errno.ENOSPC
    assert f"{out_dir}: not written: {NO_SPACE}" in str(error.value)
    assert_no_output(out_dir)
    assert [p.name for p in out_dir.parent.iterdir()] == []


def test_finetune_whose_resume_file_fills_the_disk_fails_there_and_keeps_the_last_whole_one(
    tmp_path, full_disk, monkeypatch, one_thread
):
    # the step-1 resume file fits, the step-2 one does not: the job fails at step 2 naming the
    # resume file, and the step-1 file is left whole for the rerun
    args = [*finetune_inputs(tmp_path), "--max-steps", "3", "--resume-every", "1"]
    resume_sizes = []
    real_write_bytes = checkpoints.write_bytes

    def measured(path, data):
        resume_sizes.append(len(data))
        real_write_bytes(path, data)

    with monkeypatch.context() as patch:
        patch.setattr(checkpoints, "write_bytes", measured)
        finetune.main([*args, "--out-dir", str(tmp_path / "probe"), "--resume-file", str(tmp_path / "probe.pt")])
    first_size, second_size = resume_sizes[:2]  # then model.pt

    out_dir, resume_file = tmp_path / "finetune" / "spk", tmp_path / "finetune" / "spk.resume.pt"
    full_disk(first_size + second_size // 2)
    with pytest.raises(OSError) as error:
        finetune.main([*args, "--out-dir", str(out_dir), "--resume-file", str(resume_file)])
    assert f"{resume_file}: not written: {NO_SPACE}" in str(error.value)
    assert_no_output(out_dir)
    assert torch.load(resume_file, weights_only=False)["loop"]["step"] == 1
    assert [p.name for p in resume_file.parent.iterdir()] == [resume_file.name]
