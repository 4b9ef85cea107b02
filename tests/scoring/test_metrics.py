import math
import shutil
import subprocess

import numpy as np
import pytest
import torch

from workflow_scripts.files.audio import peak_normalize, read_audio, scale_to_snr
from workflow_scripts.scoring.metrics import (
    estoi,
    neg_sdr_loss,
    pesq_wb,
    safe_metric,
    sdr_db,
    sdr_improvement_db,
    sdr_torch,
    si_sdr_db,
    si_sdr_torch,
)


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    """About 3 s of zero-mean synthetic speech (flite), peak 0.9."""
    if shutil.which("flite") is None:
        pytest.skip("flite is not installed")
    wav = tmp_path_factory.mktemp("speech") / "speech.wav"
    text = "The quick brown fox jumps over the lazy dog near the river bank."
    subprocess.run(["flite", "-voice", "kal16", "-t", text, "-o", str(wav)], check=True)
    audio = peak_normalize(read_audio(wav))
    return (audio - audio.mean()).astype(np.float32)


@pytest.fixture(scope="module")
def white_noise(speech) -> np.ndarray:
    noise = np.random.default_rng(0).standard_normal(speech.size)
    return (noise - noise.mean()).astype(np.float32)


def test_identical_signals_give_very_high_sdr(speech):
    assert sdr_db(speech, speech) >= 100.0
    assert si_sdr_db(speech, speech) >= 100.0


def test_sdr_of_mixture_equals_its_snr(speech, white_noise):
    mixture = speech + scale_to_snr(speech, white_noise, 5.0)
    assert sdr_db(speech, mixture) == pytest.approx(5.0, abs=1e-3)


def test_sdr_is_scale_dependent(speech):
    assert sdr_db(speech, 0.5 * speech) == pytest.approx(20 * math.log10(2), abs=1e-3)  # 6.02 dB
    assert si_sdr_db(speech, 0.5 * speech) >= 100.0


def test_sdr_ignores_offsets(speech, white_noise):
    mixture = speech + scale_to_snr(speech, white_noise, 5.0)
    assert sdr_db(speech + 0.3, mixture - 0.1) == pytest.approx(5.0, abs=1e-3)


def test_sdr_improvement(speech, white_noise):
    mixture = speech + scale_to_snr(speech, white_noise, 5.0)
    assert sdr_improvement_db(speech, 0.5 * speech, mixture) == pytest.approx(6.0206 - 5.0, abs=1e-3)


def test_estoi(speech, white_noise):
    assert estoi(speech, speech) == pytest.approx(1.0, abs=1e-3)
    noisy = speech + scale_to_snr(speech, white_noise, -5.0)
    assert estoi(speech, noisy) < 0.8


def test_pesq(speech, white_noise):
    assert pesq_wb(speech, speech) > 4.0
    noisy = speech + scale_to_snr(speech, white_noise, 0.0)
    assert 1.0 <= pesq_wb(speech, noisy) <= 3.0


@pytest.mark.parametrize("fn", [pesq_wb, estoi, sdr_db])
def test_metric_on_silence_is_nan_with_reason(fn):
    silence = np.zeros(48_000, dtype=np.float32)
    value, reason = safe_metric(fn, silence, silence)
    assert math.isnan(value)
    assert fn.__name__ in reason and "silent" in reason


def test_failures_are_nan_with_reason(speech):
    value, reason = safe_metric(pesq_wb, speech[:1000], speech[:1000])  # < 0.25 s
    assert math.isnan(value) and "BufferTooShort" in reason
    value, reason = safe_metric(sdr_db, speech, speech[:-1])
    assert math.isnan(value) and "length mismatch" in reason
    value, reason = safe_metric(sdr_db, speech, 0.5 * speech)
    assert reason == "" and value == pytest.approx(6.0206, abs=1e-3)


def test_torch_versions_match_numpy(speech, white_noise):
    estimates = np.stack([speech + scale_to_snr(speech, white_noise, snr) for snr in (-3.0, 0.0, 7.0)])
    references = np.stack([speech] * 3)
    sdr = sdr_torch(torch.from_numpy(estimates).double(), torch.from_numpy(references).double())
    assert sdr.numpy() == pytest.approx([-3.0, 0.0, 7.0], abs=1e-3)
    si_sdr = si_sdr_torch(torch.from_numpy(estimates).double(), torch.from_numpy(references).double())
    assert si_sdr.numpy() == pytest.approx([si_sdr_db(speech, e) for e in estimates], abs=1e-6)
    loss = neg_sdr_loss(torch.from_numpy(estimates), torch.from_numpy(references))
    assert loss.item() == pytest.approx(-4.0 / 3, abs=1e-3)


def test_neg_sdr_loss_has_gradients(speech, white_noise):
    estimate = torch.from_numpy(speech + scale_to_snr(speech, white_noise, 0.0))[None].requires_grad_()
    neg_sdr_loss(estimate, torch.from_numpy(speech)[None]).backward()
    assert torch.isfinite(estimate.grad).all() and estimate.grad.abs().sum() > 0
