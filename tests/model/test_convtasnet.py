import os
from pathlib import Path

import numpy as np
import pytest
import torch

from workflow_scripts.files.audio import mix_at_snr, read_audio
from workflow_scripts.model.convtasnet import (
    CheckpointError,
    build_model,
    count_parameters,
    load_checkpoint,
    save_checkpoint,
    size_name,
)
from workflow_scripts.scoring.metrics import sdr_db, sdr_improvement_db

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def genda25_dir() -> Path:
    folder = Path(os.environ.get("GENDA25_DIR", REPO_ROOT / ".." / "shared" / "genda25"))
    if not folder.is_dir():
        pytest.skip(f"GenDA 2025 challenge files not found at {folder} (set GENDA25_DIR)")
    return folder


def pink_noise(num_samples: int, seed: int) -> np.ndarray:
    """Deterministic 1/f noise."""
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(num_samples))
    freqs = np.arange(spectrum.size, dtype=np.float64)
    freqs[0] = 1.0
    spectrum[0] = 0.0  # zero mean
    return np.fft.irfft(spectrum / np.sqrt(freqs), n=num_samples).astype(np.float32)


@pytest.mark.parametrize("size, expected", [("tiny", 158_037), ("small", 245_133)])
def test_parameter_counts(size, expected):
    assert count_parameters(build_model(size)) == expected


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_challenge_checkpoints_load_strictly(genda25_dir, size):
    model, checkpoint = load_checkpoint(genda25_dir / "checkpoints" / f"convtasnet_{size}.pt")
    assert size_name(model.config) == size
    assert set(model.state_dict()) == set(checkpoint["model_state_dict"])
    assert not model.training


def test_tiny_generalist_improves_sdr_on_real_speech(genda25_dir):
    model, _ = load_checkpoint(genda25_dir / "checkpoints" / "convtasnet_tiny.pt")
    improvements = []
    for i, speaker in enumerate(["F0", "M3", "VirtualF2"]):
        clean = read_audio(genda25_dir / "enrollment" / f"{speaker}_ref.wav")  # 24 kHz -> 16 kHz
        mixture, _ = mix_at_snr(clean, pink_noise(clean.size, seed=i), snr_db=0.0)
        with torch.inference_mode():
            enhanced = model(torch.from_numpy(mixture)[None])[0].numpy()
        assert abs(sdr_db(clean, mixture)) < 0.1
        improvements.append(sdr_improvement_db(clean, enhanced, mixture))
    assert np.mean(improvements) > 0.0, improvements


def test_model_is_scale_equivariant():
    # the encoder input is not normalised; gLN makes the masks scale-invariant
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    x = torch.randn(2, 8000)
    with torch.inference_mode():
        assert torch.allclose(model(3.0 * x), 3.0 * model(x), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("num_samples", [17, 1001, 16_003])
def test_output_length_equals_input_length(num_samples):
    model = build_model("tiny").eval()
    with torch.inference_mode():
        out = model(torch.randn(3, num_samples))
    assert out.shape == (3, num_samples)


def test_forward_accepts_one_dimensional_input():
    model = build_model("tiny").eval()
    x = torch.randn(1000)
    with torch.inference_mode():
        assert torch.allclose(model(x), model(x[None])[0])
        with pytest.raises(ValueError, match="shorter"):
            model(torch.randn(1, 10))


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(1)
    model = build_model("tiny")
    path = tmp_path / "sub" / "model.pt"
    save_checkpoint(path, model, {"training": {"best_step": 7}})
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temporary left
    loaded, checkpoint = load_checkpoint(path)
    assert set(checkpoint) == {"model_name", "model_config", "model_state_dict", "training"}
    assert checkpoint["model_name"] == "ConvTasNet"
    assert checkpoint["training"] == {"best_step": 7}
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    x = torch.randn(1, 4000)
    with torch.inference_mode():
        assert torch.equal(model.eval()(x), loaded(x))


def test_mismatched_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "wrong.pt"
    model = build_model("small")
    save_checkpoint(path, model)
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["model_config"] = build_model("tiny").config
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="wrong.pt"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")
