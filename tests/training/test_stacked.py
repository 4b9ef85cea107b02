"""Stacked training (workflow_scripts/training/stacked_loop.py) against the plain trainer.

K models trained together must give what training.loop.train gives each alone:
with the same batches, the same losses, validation scores, early-stopping
decisions and weights. In float64 the two agree to 1e-9 (relative); in
float32 the losses agree to 1e-4 (relative) and validation SDRs to 1e-4 dB
over the few steps run.
"""

import copy
import dataclasses
import logging
import os
import signal

import numpy as np
import pandas as pd
import pytest
import torch

from workflow_scripts.model.convtasnet import ConvTasNet, build_model
from workflow_scripts.model.enhance import enhance, enhance_many
from workflow_scripts.model.stacked import StackedConvTasNet
from workflow_scripts.training.data import CropMixer, validation_set
from workflow_scripts.training.loop import mean_validation_sdr, train
from workflow_scripts.training.recipe import Recipe
from workflow_scripts.training.resume import run_fingerprint
from workflow_scripts.training.stacked_data import CropMixerBatches, DeviceCropMixer, StackedValidation
from workflow_scripts.training.stacked_loop import train_stacked

from signals import noise_like, speech_like

SAMPLE_RATE = 16000
CROP_SECONDS = 0.05  # 800 samples: small, so that a test runs in seconds


class Float64ConvTasNet(ConvTasNet):
    """A float64 ConvTasNet that accepts the float32 batches of training.loop.train."""

    def forward(self, wav):
        return super().forward(wav.double())


def model_data(k: int):
    """(training utterances, noises, validation pairs) of model k; one training
    utterance is shorter than a crop."""
    utterances = [speech_like(n, 100 * k + i) for i, n in enumerate([1200, 1800, 600, 1500])]
    noises = [noise_like(n, 100 * k + 50 + i) for i, n in enumerate([1000, 700])]
    val_utterances = [speech_like(n, 100 * k + 70 + i) for i, n in enumerate([1000, 850])]
    return utterances, noises, validation_set(val_utterances, noises, seed=k)


def initial_models(count: int, cls=ConvTasNet, dtype=torch.float32) -> list:
    models = []
    for k in range(count):
        torch.manual_seed(k)
        model = cls(build_model("tiny").config)
        models.append(model.to(dtype))
    return models


def plain_and_stacked(recipes, cls, dtype):
    """Train each model alone with training.loop.train and all together with
    train_stacked from the same initial weights and batches."""
    data = [model_data(k) for k in range(len(recipes))]
    start = initial_models(len(recipes), cls, dtype)
    plain_models = copy.deepcopy(start)
    plain = [
        train(model, CropMixer(utts, noises, recipe), val_pairs, recipe, torch.device("cpu"))
        for model, (utts, noises, val_pairs), recipe in zip(plain_models, data, recipes)
    ]
    stacked_models = copy.deepcopy(start)
    batches = CropMixerBatches([CropMixer(u, n, r) for (u, n, _), r in zip(data, recipes)], recipes)
    validation = StackedValidation([val_pairs for _, _, val_pairs in data])
    step_losses = []
    stacked = train_stacked(stacked_models, batches, validation, recipes, "cpu", dtype=dtype,
                            step_losses=step_losses, progress=False)
    return plain, plain_models, stacked, stacked_models, step_losses


def assert_same_training(plain, plain_models, stacked, stacked_models, rtol):
    for k, (p, s) in enumerate(zip(plain, stacked)):
        assert [row["step"] for row in s.history] == [row["step"] for row in p.history], f"model {k}"
        assert [row["best"] for row in s.history] == [row["best"] for row in p.history], f"model {k}"
        assert s.best_step == p.best_step
        val_p = np.array([row["val_sdr_db"] for row in p.history])
        val_s = np.array([row["val_sdr_db"] for row in s.history])
        np.testing.assert_allclose(val_s, val_p, rtol=rtol, atol=rtol)
        loss_p = np.array([row["train_loss"] for row in p.history[1:]])
        loss_s = np.array([row["train_loss"] for row in s.history[1:]])
        np.testing.assert_allclose(loss_s, loss_p, rtol=rtol, atol=rtol)
        for name, value in p.best_state.items():
            np.testing.assert_allclose(s.best_state[name].numpy(), value.numpy(), rtol=rtol, atol=rtol,
                                       err_msg=f"model {k} best {name}")
        for (name, value), other in zip(plain_models[k].state_dict().items(), stacked_models[k].state_dict().values()):
            np.testing.assert_allclose(other.numpy(), value.numpy(), rtol=rtol, atol=rtol,
                                       err_msg=f"model {k} final {name}")


def test_stacked_equals_separate_trainings_and_freezes_a_stopped_model():
    # float64, so that the two computations agree to rounding (1e-9 relative).
    # Model 1 validates every step and stops at its first step without
    # improvement; models 0 and 2 (other learning rates) run their 6 steps.
    recipes = [
        Recipe(batch_size=4, crop_seconds=CROP_SECONDS, lr=1e-3, max_steps=6, val_every=3, patience=5, seed=0),
        Recipe(batch_size=4, crop_seconds=CROP_SECONDS, lr=3e-2, max_steps=6, val_every=1, patience=1, seed=1),
        Recipe(batch_size=4, crop_seconds=CROP_SECONDS, lr=3e-4, max_steps=6, val_every=3, patience=5, seed=2),
    ]
    plain, plain_models, stacked, stacked_models, step_losses = plain_and_stacked(
        recipes, Float64ConvTasNet, torch.float64
    )
    stop_step = plain[1].history[-1]["step"]
    assert stop_step < 6, "model 1 should stop early in this setting"
    assert plain[0].history[-1]["step"] == plain[2].history[-1]["step"] == 6
    assert [len(curve) for curve in step_losses] == [6, stop_step, 6]
    # same histories, best and final weights; model 1's final weights are those
    # of its stop step (the plain trainer's), though the others trained on
    assert_same_training(plain, plain_models, stacked, stacked_models, rtol=1e-9)


def test_stacked_float32_losses_match():
    recipes = [
        Recipe(batch_size=4, crop_seconds=CROP_SECONDS, lr=1e-3, max_steps=3, val_every=1, patience=9, seed=s)
        for s in range(2)
    ]
    plain, _, stacked, _, _ = plain_and_stacked(recipes, ConvTasNet, torch.float32)
    for p, s in zip(plain, stacked):
        loss_p = np.array([row["train_loss"] for row in p.history[1:]])
        loss_s = np.array([row["train_loss"] for row in s.history[1:]])
        np.testing.assert_allclose(loss_s, loss_p, rtol=1e-4)
        val_p = np.array([row["val_sdr_db"] for row in p.history])
        val_s = np.array([row["val_sdr_db"] for row in s.history])
        np.testing.assert_allclose(val_s, val_p, atol=1e-4)


def test_validation_and_batched_enhancement_match_one_at_a_time():
    models = initial_models(2)
    val_sets = [model_data(k)[2] for k in range(2)]
    stack = StackedConvTasNet.from_models(models)
    batched = StackedValidation(val_sets, max_batch_samples=6000).mean_sdr_db(stack)
    single = [mean_validation_sdr(m, pairs, torch.device("cpu")) for m, pairs in zip(models, val_sets)]
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-5)

    mixtures = [speech_like(n, 900 + n) for n in (3000, 16, 4100, 2500, 4100)]
    outputs = enhance_many(models[0], mixtures, "cpu", max_batch_samples=9000)
    for mixture, output in zip(mixtures, outputs):
        reference = enhance(models[0], mixture, torch.device("cpu"))
        assert output.shape == mixture.shape
        np.testing.assert_allclose(output, reference, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="shorter than"):
        enhance_many(models[0], [np.zeros(10, np.float32)], "cpu")


def test_validation_scores_shared_rows_once_with_the_same_numbers(monkeypatch):
    """Models of the same weights and validation pairs are scored once, and one position at a
    time gives the numbers of the whole chunk at once: both exactly."""
    models = initial_models(3)
    val_sets = [model_data(k)[2] for k in range(2)]
    rows = [0, 1, 0, 1]  # rows 2 and 3 repeat rows 0 and 1: weights and validation pairs
    stack = StackedConvTasNet.from_models([models[k] for k in rows])
    validation = StackedValidation([val_sets[k] for k in rows])
    assert validation.positions_per_pass == 1
    scores = validation.mean_sdr_db(stack)
    np.testing.assert_array_equal(scores[2:], scores[:2])
    whole = StackedValidation([val_sets[k] for k in rows], positions_per_pass=2)
    np.testing.assert_array_equal(whole.mean_sdr_db(stack), scores)
    every_row = lambda flat, data: (list(range(len(flat))), list(range(len(flat))))  # noqa: E731
    monkeypatch.setattr("workflow_scripts.training.stacked_data._distinct_rows", every_row)
    np.testing.assert_array_equal(validation.mean_sdr_db(stack), scores)
    monkeypatch.undo()

    # another model on row 3's pairs: scored on its own, the others as before
    stack.load_row(3, models[2].state_dict())
    changed = validation.mean_sdr_db(stack)
    np.testing.assert_array_equal(changed[:3], scores[:3])
    assert changed[3] != scores[3]


def test_device_crop_mixer_draws_like_crop_mixer():
    recipes = [
        Recipe(batch_size=16, crop_seconds=CROP_SECONDS, snr_low_db=-5.0, snr_high_db=5.0),
        Recipe(batch_size=16, crop_seconds=CROP_SECONDS, snr_low_db=10.0, snr_high_db=12.0),
    ]
    data = [model_data(k) for k in range(2)]
    # an utterance that is silent but for its last 100 samples: most crops of it are silent
    data[1][0].append(np.concatenate([np.zeros(8000, np.float32), speech_like(100, 5)]))
    mixer = DeviceCropMixer([d[0] for d in data], [d[1] for d in data], recipes, seed=3)
    crop = int(CROP_SECONDS * SAMPLE_RATE)
    for _ in range(3):
        mixtures, cleans = mixer.draw()
        assert mixtures.shape == cleans.shape == (2, 16, crop)
        for k, (utterances, noises, _) in enumerate(data):
            padded = [np.pad(u, (0, max(0, crop - u.size))) for u in utterances]
            windows = np.concatenate([np.lib.stride_tricks.sliding_window_view(u, crop) for u in padded])
            for clean, mixture in zip(cleans[k].numpy(), mixtures[k].numpy()):
                assert np.any(clean != 0), "silent crops are redrawn"
                assert np.any(np.all(windows == clean, axis=1)), "a crop of one of the model's own utterances"
                noise = mixture - clean
                snr_db = 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))
                assert recipes[k].snr_low_db - 1e-3 <= snr_db <= recipes[k].snr_high_db + 1e-3
    assert not mixer.failed().any()

    silent = DeviceCropMixer([[np.zeros(5000, np.float32)]], [data[0][1]], recipes[:1])
    silent.draw()
    assert silent.failed().tolist() == [True]


def test_train_stacked_with_device_crops_and_compaction():
    recipes = [
        Recipe(batch_size=4, crop_seconds=CROP_SECONDS, lr=1e-3, max_steps=max_steps, val_every=2, patience=3, seed=k)
        for k, max_steps in enumerate([2, 4])
    ]
    data = [model_data(k) for k in range(2)]
    models = initial_models(2)
    mixer = DeviceCropMixer([d[0] for d in data], [d[1] for d in data], recipes, seed=0)
    results = train_stacked(models, mixer, StackedValidation([d[2] for d in data]), recipes, "cpu", progress=False)
    assert [r.history[-1]["step"] for r in results] == [2, 4]
    for result in results:
        assert all(np.isfinite(row["val_sdr_db"]) for row in result.history)
        build_model("tiny").load_state_dict(result.best_state)


class SigtermAt:
    """Batches that send this process SIGTERM while drawing step `at` (as a
    scheduler's time limit would), then draw on as the wrapped batches do."""

    def __init__(self, batches, at: int):
        self.batches, self.at, self.drawn = batches, at, 0

    def draw(self):
        self.drawn += 1
        if self.drawn == self.at:
            os.kill(os.getpid(), signal.SIGTERM)
        return self.batches.draw()

    def __getattr__(self, name):
        return getattr(self.batches, name)


@pytest.mark.parametrize("kind", ["device", "plain"])
def test_killed_stack_resumes_where_it_stopped(tmp_path, kind, caplog):
    # Model 1 stops early (step 2) before the SIGTERM at step 4, so the resume
    # file holds a finished model, a compacted stack and a mid-window loss sum.
    recipes = [
        Recipe(batch_size=4, crop_seconds=CROP_SECONDS, lr=1e-3, max_steps=8, val_every=3, patience=5, seed=0),
        Recipe(batch_size=4, crop_seconds=CROP_SECONDS, lr=3e-2, max_steps=8, val_every=1, patience=1, seed=1),
        Recipe(batch_size=4, crop_seconds=CROP_SECONDS, lr=3e-4, max_steps=8, val_every=3, patience=5, seed=2),
    ]
    data = [model_data(k) for k in range(3)]

    def fingerprint(run_recipes):
        """What the stacked step hashes: the recipes, the initial weights and every model's audio."""
        settings = {"recipes": [dataclasses.asdict(r) for r in run_recipes]}
        audio = [a for utterances, noises, pairs in data for a in [utterances, noises, [x for p in pairs for x in p]]]
        return run_fingerprint(settings, initial_models(1, Float64ConvTasNet, torch.float64)[0], audio)

    def run(resume_file=None, run_recipes=recipes, sigterm_at=None):
        models = initial_models(3, Float64ConvTasNet, torch.float64)
        if kind == "device":
            batches = DeviceCropMixer([d[0] for d in data], [d[1] for d in data], run_recipes, seed=0)
        else:
            batches = CropMixerBatches([CropMixer(u, n, r) for (u, n, _), r in zip(data, run_recipes)], run_recipes)
        if sigterm_at is not None:
            batches = SigtermAt(batches, sigterm_at)
        validation = StackedValidation([d[2] for d in data])
        step_losses = []
        results = train_stacked(models, batches, validation, run_recipes, "cpu", dtype=torch.float64,
                                step_losses=step_losses, progress=False, resume_file=resume_file,
                                fingerprint=fingerprint(run_recipes), resume_every=100)
        return results, models, step_losses

    whole, whole_models, whole_losses = run()
    assert whole[1].history[-1]["step"] < 4 <= whole[0].history[-1]["step"]

    resume = tmp_path / "stack.resume.pt"
    with pytest.raises(SystemExit):
        run(resume, sigterm_at=4)
    assert resume.is_file()
    saved = torch.load(resume, weights_only=False)
    assert saved["loop"]["step"] == 4 and saved["loop"]["ids"] == [0, 2]

    # a resume file of another recipe (model 2's lr) is ignored, the log says what differs, and
    # that run starts at step 0
    other_recipes = [*recipes[:2], dataclasses.replace(recipes[2], lr=1e-4)]
    with caplog.at_level(logging.INFO, logger="workflow_scripts.training"):
        _, _, other_losses = run(resume, run_recipes=other_recipes)
    assert "recipes[2].lr 0.0003 in the file, 0.0001 now" in caplog.text, caplog.text
    assert "resumed from" not in caplog.text
    assert [len(c) for c in other_losses] == [len(c) for c in whole_losses]
    assert torch.load(resume, weights_only=False)["loop"]["step"] == 4, "the ignored file was overwritten"

    # the run itself continues from step 4 and ends exactly as the uninterrupted one
    resumed, resumed_models, resumed_losses = run(resume)
    for k in range(3):
        assert pd.DataFrame(resumed[k].history).equals(pd.DataFrame(whole[k].history)), f"model {k}"
        assert resumed[k].best_step == whole[k].best_step
        np.testing.assert_array_equal(resumed_losses[k], whole_losses[k])
        for name, value in whole[k].best_state.items():
            torch.testing.assert_close(resumed[k].best_state[name], value, rtol=0, atol=0)
        for name, value in whole_models[k].state_dict().items():
            torch.testing.assert_close(resumed_models[k].state_dict()[name], value, rtol=0, atol=0)


def test_a_models_crops_and_training_do_not_depend_on_its_stack():
    # model B's crops are the same alone, first or second in a stack, and after
    # its partner left the stack; so is its training, up to float rounding
    recipes = [
        Recipe(batch_size=4, crop_seconds=CROP_SECONDS, lr=1e-3, max_steps=4, val_every=2, patience=3, seed=k)
        for k in range(2)
    ]
    recipes[0] = Recipe(**{**recipes[0].__dict__, "max_steps": 2})  # A stops after 2 steps
    data = [model_data(k) for k in range(2)]

    def mixer(order):
        return DeviceCropMixer([data[k][0] for k in order], [data[k][1] for k in order],
                               [recipes[k] for k in order], seed=5)

    alone, first, second = mixer([1]), mixer([1, 0]), mixer([0, 1])
    for step in range(3):
        if step == 2:
            second.keep([1])  # A left the stack
        crops = [m.draw()[1] for m in (alone, first, second)]
        torch.testing.assert_close(crops[1][0], crops[0][0], rtol=0, atol=0)
        torch.testing.assert_close(crops[2][-1], crops[0][0], rtol=0, atol=0)

    def train_b(order):
        models = initial_models(2, Float64ConvTasNet, torch.float64)
        result = train_stacked([models[k] for k in order], mixer(order), StackedValidation([data[k][2] for k in order]),
                               [recipes[k] for k in order], "cpu", dtype=torch.float64, progress=False)
        return result[order.index(1)]

    b_alone, b_stacked = train_b([1]), train_b([0, 1])
    assert [row["step"] for row in b_stacked.history] == [0, 2, 4]
    np.testing.assert_allclose([row["val_sdr_db"] for row in b_stacked.history],
                               [row["val_sdr_db"] for row in b_alone.history], rtol=1e-9)
    for name, value in b_alone.best_state.items():
        torch.testing.assert_close(b_stacked.best_state[name], value, rtol=1e-9, atol=1e-12)
