"""Resume after preemption: a fine-tuning process killed mid-way (SIGKILL, or SIGTERM as a
scheduler's time limit sends it) and started again ends with the same model and loss history,
bit for bit on the CPU, as an uninterrupted run with the same seed."""
# ruff: noqa: F811 (test_training's fixtures, shared: flite speech, noises, a tiny generalist)

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_training import finetune_args, init_checkpoint, noise_dir, speech_dir  # noqa: F401 (fixtures)

from workflow_scripts.model.convtasnet import build_model, load_checkpoint
from workflow_scripts.files.folders import read_speech_folder
from workflow_scripts.training.data import CropMixer, load_noises, load_utterances, validation_set
from workflow_scripts.training.loop import train
from workflow_scripts.training.recipe import Recipe

REPO = Path(__file__).resolve().parents[1]
MAX_STEPS = 24  # long enough that the kill lands mid-way: the first checkpoint is at step 2
VAL_EVERY = 5


def run_args(init, speech, noises, out_dir: Path, resume_file: Path) -> list[str]:
    args = finetune_args(init, speech, noises, out_dir)
    for flag, value in [
        ("--max-steps", MAX_STEPS),
        ("--val-every", VAL_EVERY),
        ("--patience", MAX_STEPS),
        ("--crop-seconds", 0.25),
    ]:
        args[args.index(flag) + 1] = str(value)
    return [*args, "--resume-file", str(resume_file), "--resume-every", "2"]


def finetune_process(args: list[str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "a") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "workflow_scripts.finetune", *args], cwd=REPO, stdout=log, stderr=log
        )


def assert_same_training(out_a: Path, out_b: Path) -> None:
    model_a, checkpoint_a = load_checkpoint(out_a / "model.pt")
    model_b, checkpoint_b = load_checkpoint(out_b / "model.pt")
    for key, value in model_a.state_dict().items():
        assert torch.equal(value, model_b.state_dict()[key]), key
    assert checkpoint_a["training"]["best_step"] == checkpoint_b["training"]["best_step"]
    history_a, history_b = (pd.read_csv(out / "training_log.csv") for out in (out_a, out_b))
    pd.testing.assert_frame_equal(history_a, history_b, check_exact=True)
    assert list(history_a["step"]) == [0, *range(VAL_EVERY, MAX_STEPS, VAL_EVERY), MAX_STEPS]


@pytest.fixture(scope="module")
def straight_run(init_checkpoint, speech_dir, noise_dir, tmp_path_factory):
    """The uninterrupted run, with the same resume file setting as the workflow's."""
    folder = tmp_path_factory.mktemp("straight")
    resume_file = folder / "run.resume.pt"
    process = finetune_process(
        run_args(init_checkpoint, speech_dir, noise_dir, folder / "run", resume_file), folder / "run.log"
    )
    assert process.wait(timeout=300) == 0, (folder / "run.log").read_text()
    assert not resume_file.exists(), "the resume file outlived the final outputs"
    return folder / "run"


@pytest.mark.parametrize("kill_signal", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_finetune_resumes_to_the_same_result(
    init_checkpoint,
    speech_dir,
    noise_dir,
    straight_run,
    tmp_path,
    kill_signal,
):
    out_dir, resume_file, log_path = (
        tmp_path / "killed",
        tmp_path / "killed.resume.pt",
        tmp_path / "killed.log",
    )
    args = run_args(init_checkpoint, speech_dir, noise_dir, out_dir, resume_file)
    process = finetune_process(args, log_path)
    deadline = time.monotonic() + 300
    while not resume_file.exists():
        assert process.poll() is None, f"finished before its first checkpoint:\n{log_path.read_text()}"
        assert time.monotonic() < deadline, "no resume file within 300 s"
        time.sleep(0.01)
    process.send_signal(kill_signal)
    returncode = process.wait(timeout=120)
    assert returncode == (-signal.SIGKILL if kill_signal == signal.SIGKILL else 128 + signal.SIGTERM), (
        log_path.read_text()
    )
    assert not out_dir.exists(), "a killed run left outputs"
    saved_step = torch.load(resume_file, weights_only=False)["loop"]["step"]
    assert 2 <= saved_step < MAX_STEPS

    restarted = finetune_process(args, log_path)
    assert restarted.wait(timeout=300) == 0, log_path.read_text()
    assert f"at step {saved_step}" in log_path.read_text().split("resumed from")[-1].splitlines()[0]
    assert not resume_file.exists()
    assert_same_training(straight_run, out_dir)


def small_run(speech_dir, noise_dir) -> tuple[CropMixer, list, Recipe]:
    """A 4-step run on 2 training utterances validated on 1: (mixer, validation pairs, recipe)."""
    utterances = load_utterances(read_speech_folder(speech_dir).iloc[:3])
    _, noises = load_noises(noise_dir)
    recipe = Recipe(batch_size=2, crop_seconds=0.25, max_steps=4, val_every=2, patience=9, seed=3)
    return CropMixer(utterances[1:], noises, recipe), validation_set(utterances[:1], noises, 3), recipe


def fresh_model():
    """The tiny ConvTasNet, the same initial weights each time."""
    torch.manual_seed(0)
    return build_model("tiny")


def test_resume_in_process_and_a_file_of_another_recipe_is_ignored(
    speech_dir,
    noise_dir,
    tmp_path,
    caplog,
    one_thread,
):
    mixer, val_pairs, recipe = small_run(speech_dir, noise_dir)
    resume_file = tmp_path / "run.resume.pt"
    straight = train(fresh_model(), mixer, val_pairs, recipe, torch.device("cpu"))
    # a run of 4 steps leaves its step-2 checkpoint behind (the step module removes it after writing)
    train(fresh_model(), mixer, val_pairs, recipe, torch.device("cpu"), resume_file, resume_every=2)
    assert torch.load(resume_file, weights_only=False)["loop"]["step"] == 2

    with caplog.at_level(logging.INFO, logger="workflow_scripts.training"):
        resumed = train(fresh_model(), mixer, val_pairs, recipe, torch.device("cpu"), resume_file, 2)
    assert "at step 2" in caplog.text
    pd.testing.assert_frame_equal(
        pd.DataFrame(resumed.history), pd.DataFrame(straight.history), check_exact=True
    )
    for key, value in straight.best_state.items():
        assert torch.equal(value, resumed.best_state[key]), key

    caplog.clear()
    other = Recipe(**{**recipe.__dict__, "lr": 5e-4, "max_steps": 1})
    with caplog.at_level(logging.INFO, logger="workflow_scripts.training"):
        result = train(fresh_model(), mixer, val_pairs, other, torch.device("cpu"), resume_file, 2)
    assert "resume file of another run (lr 0.001 in the file, 0.0005 now; max_steps 4 in the file, 1 now)" in (
        caplog.text
    ), caplog.text
    assert "resumed from" not in caplog.text
    assert [row["step"] for row in result.history] == [0, 1]


def test_a_truncated_resume_file_is_ignored_with_a_warning(speech_dir, noise_dir, tmp_path, caplog, one_thread):
    # a resume file is a cache: one cut short is named in a warning, and the run starts from step 0
    mixer, val_pairs, recipe = small_run(speech_dir, noise_dir)
    resume_file = tmp_path / "run.resume.pt"
    straight = train(fresh_model(), mixer, val_pairs, recipe, torch.device("cpu"), resume_file, resume_every=2)
    whole = resume_file.read_bytes()
    resume_file.write_bytes(whole[: len(whole) // 2])

    with caplog.at_level(logging.INFO, logger="workflow_scripts.training"):
        result = train(fresh_model(), mixer, val_pairs, recipe, torch.device("cpu"), resume_file, 2)
    warning = f"{resume_file}: unreadable resume file (truncated or corrupt: "
    assert warning in caplog.text and "ignored, starting from step 0" in caplog.text, caplog.text
    assert "resumed from" not in caplog.text
    pd.testing.assert_frame_equal(pd.DataFrame(result.history), pd.DataFrame(straight.history), check_exact=True)
    # the run wrote a whole one again in its place
    assert torch.load(resume_file, weights_only=False)["loop"]["step"] == 2
