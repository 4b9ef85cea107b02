"""Torch files cut short or corrupt (model checkpoints, voice conditioning files): the error names
the file, the cause and what to do, in one line, without torch's traceback."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest
import torch

from workflow_scripts.files.checkpoints import TorchFileError, load_torch, save_torch
from workflow_scripts.model.convtasnet import CheckpointError, build_model, load_checkpoint, save_checkpoint
from workflow_scripts.tts.voice import read_voice, write_voice


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def empty(path: Path) -> None:
    path.write_bytes(b"")


def garbage(path: Path) -> None:
    path.write_bytes(b"this is not a torch file\n" * 10)


DAMAGE = {"truncated": truncate, "empty": empty, "not-torch": garbage}


def test_save_and_load_round_trip(tmp_path):
    save_torch({"weights": torch.arange(5.0)}, tmp_path / "x.pt")
    assert torch.equal(load_torch(tmp_path / "x.pt", "test file")["weights"], torch.arange(5.0))
    with pytest.raises(FileNotFoundError, match=r"missing\.pt: test file not found"):
        load_torch(tmp_path / "missing.pt", "test file")


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_torch_file_is_named_with_the_cause_and_the_remedy(tmp_path, damage):
    path = tmp_path / "x.pt"
    save_torch({"weights": torch.ones(1000)}, path)
    damage(path)
    with pytest.raises(TorchFileError) as error:
        load_torch(path, "test file")
    message = str(error.value)
    assert message.startswith(f"{path}: not a readable test file (truncated or corrupt: ")
    assert message.endswith("); delete it and rerun: snakemake will rebuild it")
    assert "\n" not in message
    # what is printed is our message, not torch.load's traceback before it
    printed = "".join(traceback.format_exception(error.value))
    assert "torch/serialization.py" not in printed and "During handling" not in printed


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_model_checkpoint_says_to_delete_or_replace_it(tmp_path, damage):
    path = tmp_path / "model.pt"
    save_checkpoint(path, build_model("tiny"))
    damage(path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert str(error.value).startswith(f"{path}: not a readable checkpoint (truncated or corrupt: ")
    assert str(error.value).endswith(
        "); if the workflow made it, delete it and rerun: snakemake will rebuild it;"
        " if it is a file of your own, replace it"
    )
    assert error.value.__cause__ is None and error.value.__suppress_context__


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_voice_conditioning_file_says_to_delete_it(tmp_path, damage):
    path = tmp_path / "spk01.pt"
    write_voice({"backend": "world_clone", "options": {}, "conditioning": {"f0": torch.ones(100)}}, path)
    assert read_voice(path, "world_clone")["backend"] == "world_clone"
    damage(path)
    with pytest.raises(TorchFileError, match=r"spk01\.pt: not a readable voice conditioning file \(truncated or"
                                             r" corrupt: .*\); delete it and rerun: snakemake will rebuild it"):
        read_voice(path, "world_clone")
