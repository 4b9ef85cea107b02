"""evaluate: batched enhancement equals one mixture at a time, parallel scoring
equals serial scoring, the GPU is given back before scoring."""

import fcntl
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from workflow_scripts import evaluate
from workflow_scripts.files.audio import AudioError, read_audio, write_audio
from workflow_scripts.files.folders import read_test_folder, read_test_signals
from workflow_scripts.model.convtasnet import build_model, load_checkpoint, save_checkpoint
from workflow_scripts.model.enhance import enhance
from workflow_scripts.runtime import gpu
from workflow_scripts.scoring.enhanced import METRICS, NO_REFERENCE, score_all, scoring_pool

# batched (enhance_many) against one at a time (enhance) on the CPU in float32,
# and batched on a GPU against that: the tolerances evaluate's docstring states
AUDIO_TOL = 1e-5  # max abs difference / peak of the one-at-a-time output
METRIC_TOL = 1e-3  # SDR in dB, eSTOI, PESQ (the CSV holds 4 decimals)
LENGTHS_S = (2.2, 0.5, 1.7, 0.9, 1.3)  # unsorted, so that batching reorders them
SMALL_BATCH = 2**16  # batches of one, two and three mixtures for LENGTHS_S
# pystoi's eSTOI of the same signals varies in its last digits from call to call (~1e-13,
# in one process too): parallel and serial scores agree to that, and exactly at the CSV's 4 decimals
RERUN_TOL = 1e-9


def voiced(seconds: float, f0_hz: float, seed: int) -> np.ndarray:
    """A harmonic tone with a syllable-rate envelope and a pause, peak 0.5 (stands in for speech)."""
    t = np.arange(int(seconds * 16000)) / 16000
    audio = sum(np.sin(2 * np.pi * f0_hz * k * t + seed * k) / k for k in range(1, 8))
    audio *= np.sin(2 * np.pi * 2.0 * t) ** 2 * (t > 0.1)
    return (0.5 * audio / np.max(np.abs(audio))).astype(np.float32)


@pytest.fixture(scope="module")
def test_dir(tmp_path_factory):
    """Five mixtures of different lengths with clean references, one without."""
    folder = tmp_path_factory.mktemp("test")
    rng = np.random.default_rng(0)
    rows = []
    for i, seconds in enumerate((*LENGTHS_S, 1.1)):
        clean = voiced(seconds, 110 + 30 * i, seed=i)
        mixture = clean + 0.08 * rng.standard_normal(clean.size).astype(np.float32)
        write_audio(folder / f"mix/m{i}.wav", mixture)
        referenced = i < len(LENGTHS_S)
        if referenced:
            write_audio(folder / f"clean/c{i}.wav", clean)
        rows.append({"mixture_id": f"m{i}", "mixture": f"mix/m{i}.wav",
                     "clean": f"clean/c{i}.wav" if referenced else "", "noise_id": "white", "snr_db": 5.0})
    pd.DataFrame(rows).to_csv(folder / "test.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def model_pt(tmp_path_factory):
    """A randomly initialised tiny ConvTasNet, loaded through load_checkpoint as a real one."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_checkpoint(path, build_model("tiny"))
    return path


def run_evaluate(model_pt, test_dir, out, *options):
    evaluate.main(["--model", str(model_pt), "--test-dir", str(test_dir), "--device", "cpu",
                   "--out-csv", str(out / "spk.csv"), "--out-summary", str(out / "spk.json"),
                   "--enhanced-dir", str(out / "enhanced"), *options])
    table = pd.read_csv(out / "spk.csv", keep_default_na=False, na_values=["", "nan", "NaN"])
    return table, json.loads((out / "spk.json").read_text())


def one_at_a_time(model_pt, mixtures):
    model, _ = load_checkpoint(model_pt)
    return [enhance(model, m, torch.device("cpu")) for m in mixtures]


def max_relative_difference(outputs, references) -> float:
    assert [o.shape for o in outputs] == [r.shape for r in references]
    return max(float(np.max(np.abs(o - r)) / np.max(np.abs(r))) for o, r in zip(outputs, references))


@pytest.mark.parametrize("batch_samples", [SMALL_BATCH, 2**23])
def test_batched_enhancement_equals_one_at_a_time(model_pt, test_dir, batch_samples):
    table = read_test_folder(test_dir)
    mixtures, _ = read_test_signals(table)
    batched = evaluate.enhance_mixtures(model_pt, mixtures, torch.device("cpu"), batch_samples)
    assert max_relative_difference(batched, one_at_a_time(model_pt, mixtures)) <= AUDIO_TOL


def test_batched_evaluation_scores_as_one_at_a_time(model_pt, test_dir, tmp_path):
    single, single_summary = run_evaluate(model_pt, test_dir, tmp_path / "single", "--batch-samples", "0",
                                          "--workers", "1")
    batched, batched_summary = run_evaluate(model_pt, test_dir, tmp_path / "batched",
                                            "--batch-samples", str(SMALL_BATCH), "--workers", "1")
    wav_names = sorted(p.name for p in (tmp_path / "single" / "enhanced").glob("*.wav"))
    assert wav_names == [f"m{i}.wav" for i in range(6)]  # the unreferenced mixture is enhanced too
    wavs = {mode: [sf.read(tmp_path / mode / "enhanced" / name, dtype="float32")[0] for name in wav_names]
            for mode in ("single", "batched")}
    assert max_relative_difference(wavs["batched"], wavs["single"]) <= AUDIO_TOL

    metrics = list(METRICS)
    pd.testing.assert_frame_equal(batched.drop(columns=metrics), single.drop(columns=metrics))
    np.testing.assert_allclose(batched[metrics].to_numpy(), single[metrics].to_numpy(), rtol=0, atol=METRIC_TOL)
    for name in metrics:
        if single_summary[name] is not None:
            assert batched_summary[name] == pytest.approx(single_summary[name], abs=METRIC_TOL)
    # the metrics are real numbers where a reference exists, NaN with the reason where none does
    scored = single.iloc[: len(LENGTHS_S)]
    assert np.isfinite(scored[["sdr_in_db", "sdr_db", "sdri_db", "estoi_in", "estoi"]].to_numpy()).all()
    assert single.iloc[-1][metrics].isna().all() and single.iloc[-1].notes == NO_REFERENCE
    assert single_summary["n_utterances"] == 6 and single_summary["n_without_reference"] == 1


def test_parallel_scoring_equals_serial_scoring(model_pt, test_dir, tmp_path):
    for workers in ("1", "3"):
        run_evaluate(model_pt, test_dir, tmp_path / workers, "--workers", workers)
    assert (tmp_path / "3" / "spk.csv").read_text() == (tmp_path / "1" / "spk.csv").read_text()
    parallel_summary, serial_summary = (json.loads((tmp_path / w / "spk.json").read_text()) for w in ("3", "1"))
    assert parallel_summary.keys() == serial_summary.keys()
    for name, value in serial_summary.items():
        assert parallel_summary[name] == (pytest.approx(value, rel=RERUN_TOL) if name in METRICS else value)

    table = read_test_folder(test_dir).iloc[: len(LENGTHS_S)]
    mixtures, cleans = read_test_signals(table)
    triples = [(c, m, e, None) for c, m, e in zip(cleans, mixtures, one_at_a_time(model_pt, mixtures))]
    serial = score_all(triples, None)
    pool = scoring_pool(2)
    try:
        parallel = score_all(triples, pool)
    finally:
        pool.shutdown()
    assert len(parallel) == len(serial)
    for p, s in zip(parallel, serial):
        assert p.keys() == s.keys()
        assert p.pop("notes") == s.pop("notes")
        assert p == pytest.approx(s, rel=RERUN_TOL, abs=0)


def test_length_mismatch_stops_the_job_before_enhancement(model_pt, test_dir, tmp_path, monkeypatch):
    broken = tmp_path / "test"
    shutil.copytree(test_dir, broken)
    write_audio(broken / "clean/c2.wav", read_audio(test_dir / "clean/c2.wav")[:-1])
    monkeypatch.setattr(evaluate, "load_checkpoint", lambda path: pytest.fail("model read before the check"))
    out = tmp_path / "eval"
    with pytest.raises(AudioError, match=r"mix/m2\.wav: 27200 samples, but clean .*clean/c2\.wav has 27199"):
        run_evaluate(model_pt, broken, out, "--workers", "2")
    assert not out.exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_is_given_back_before_scoring(model_pt, test_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(gpu.LOCK_DIR_ENV, str(tmp_path / "locks"))
    monkeypatch.setattr(gpu, "_claim", None)
    device = torch.device(gpu.resolve_device("auto"))
    assert device.type == "cuda" and gpu._claim is not None
    slot_file = next((tmp_path / "locks").glob("*.lock"))
    mixtures, _ = read_test_signals(read_test_folder(test_dir))
    enhanced = evaluate.enhance_mixtures(model_pt, mixtures, device, evaluate.GPU_BATCH_SAMPLES)
    # what stays is cuBLAS's workspace (a few MiB), not the model or the batches' activations (GiBs)
    assert torch.cuda.memory_reserved() <= 64 * 2**20, torch.cuda.memory_summary()
    assert gpu._claim is None
    with open(slot_file, "rb") as lock:  # another job can take the slot now
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    # the batched path's 1x1 convs are float32 matmuls (torch's default: no TF32 for matmuls)
    assert max_relative_difference(enhanced, one_at_a_time(model_pt, mixtures)) <= AUDIO_TOL
