"""evaluate: batched enhancement equals one mixture at a time, parallel scoring
equals serial scoring, the GPU is given back before scoring; the scores that need no
reference (predicted MOS, WER) for every mixture, as the predictors give them."""

import fcntl
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from workflow_scripts import evaluate, score_mixtures
from workflow_scripts.files.audio import AudioError, read_audio, write_audio
from workflow_scripts.files.folders import read_test_folder, read_test_signals
from workflow_scripts.model.convtasnet import build_model, load_checkpoint, save_checkpoint
from workflow_scripts.model.enhance import enhance
from workflow_scripts.runtime import gpu
from workflow_scripts.scoring import nonintrusive
from workflow_scripts.scoring.asr import PocketsphinxTranscriber, word_errors
from workflow_scripts.scoring.enhanced import METRICS, NO_REFERENCE, score_all, scoring_pool
from workflow_scripts.scoring.mos import load_predictors
from workflow_scripts.world.voices import render_flite

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


def test_matmul_decoder_equals_the_transposed_conv(model_pt, test_dir):
    model, _ = load_checkpoint(model_pt)
    mixtures, _ = read_test_signals(read_test_folder(test_dir))
    by_matmul = [enhance(model, m, torch.device("cpu"), matmul_decoder=True) for m in mixtures]
    assert max_relative_difference(by_matmul, one_at_a_time(model_pt, mixtures)) <= AUDIO_TOL


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
    """With the predicted MOS of the mixture and of the enhanced speech (DNSMOS in the scoring
    processes, one thread each), as evaluate computes them without --input-scores."""
    for workers in ("1", "3"):
        run_evaluate(model_pt, test_dir, tmp_path / workers, "--workers", workers,
                     "--mos", "dnsmos", "distillmos")
    assert (tmp_path / "3" / "spk.csv").read_text() == (tmp_path / "1" / "spk.csv").read_text()
    parallel_summary, serial_summary = (json.loads((tmp_path / w / "spk.json").read_text()) for w in ("3", "1"))
    assert parallel_summary.keys() == serial_summary.keys()
    for name, value in serial_summary.items():
        assert parallel_summary[name] == (pytest.approx(value, rel=RERUN_TOL) if name in METRICS else value)
    assert serial_summary["dnsmos_ovrl_in"] is not None and serial_summary["distillmos"] is not None

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
        for key in ("notes", "mos_models", "mos_reasons"):
            assert p.pop(key) == s.pop(key)
        assert p == pytest.approx(s, rel=RERUN_TOL, abs=0)


def test_several_models_in_one_job_write_what_their_own_jobs_write(model_pt, test_dir, tmp_path):
    """--member per model: each model's table and summary as a job of its own writes them, with
    the mixtures' scores computed here and DNSMOS/DistillMOS in two scoring processes."""
    torch.manual_seed(1)
    other_pt = tmp_path / "other.pt"
    save_checkpoint(other_pt, build_model("tiny"))
    options = ["--test-dir", str(test_dir), "--device", "cpu", "--workers", "2", "--mos", "dnsmos", "distillmos"]
    members = []
    for name, model in (("first", model_pt), ("second", other_pt)):
        members += ["--member", str(model), str(tmp_path / "together" / f"{name}.csv"),
                    str(tmp_path / "together" / f"{name}.json")]
        evaluate.main(["--model", str(model), "--out-csv", str(tmp_path / "alone" / f"{name}.csv"),
                       "--out-summary", str(tmp_path / "alone" / f"{name}.json"), *options])
    evaluate.main([*members, *options])
    for name in ("first", "second"):
        together = pd.read_csv(tmp_path / "together" / f"{name}.csv")
        alone = pd.read_csv(tmp_path / "alone" / f"{name}.csv")
        pd.testing.assert_frame_equal(together, alone, rtol=RERUN_TOL)
        summaries = [json.loads((tmp_path / kind / f"{name}.json").read_text()) for kind in ("together", "alone")]
        assert summaries[0].keys() == summaries[1].keys()
        for key, value in summaries[1].items():
            assert summaries[0][key] == (pytest.approx(value, rel=RERUN_TOL) if isinstance(value, float) else value)
    # two different models: different enhanced speech, the same mixtures' scores
    first, second = (pd.read_csv(tmp_path / "together" / f"{n}.csv") for n in ("first", "second"))
    assert not np.allclose(first["sdr_db"].iloc[:5], second["sdr_db"].iloc[:5])
    pd.testing.assert_series_equal(first["dnsmos_ovrl_in"], second["dnsmos_ovrl_in"])


@pytest.mark.parametrize("arguments, message", [
    (["--model", "m.pt", "--out-csv", "a.csv", "--out-summary", "a.json", "--member", "m.pt", "b.csv", "b.json"],
     "not both"),
    (["--member", "m.pt", "a.csv", "a.json", "--member", "n.pt", "a.csv", "b.json"], "same output file"),
    (["--model", "m.pt", "--out-csv", "a.csv"], "give --model, --out-csv and --out-summary"),
])
def test_member_arguments_that_cannot_work_are_refused(arguments, message, test_dir, capsys):
    with pytest.raises(SystemExit):
        evaluate.main(["--test-dir", str(test_dir), *arguments])
    assert message in capsys.readouterr().err


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


# ---- scores without a reference ------------------------------------------------------------------

MOS_TOL = 1e-4  # the CSV's 4 decimals, and onnxruntime on one thread against its default


def score_mixtures_table(test_dir, out_csv, *options) -> pd.DataFrame:
    score_mixtures.main(["--test-dir", str(test_dir), "--out-csv", str(out_csv), *options])
    return pd.read_csv(out_csv, keep_default_na=False, na_values=["", "nan", "NaN"])


def predicted(audios: list[np.ndarray]) -> pd.DataFrame:
    """DNSMOS and DistillMOS of each audio, from scoring.mos's predictors called directly."""
    predictors, reasons = load_predictors(["dnsmos", "distillmos"])
    assert not reasons
    return pd.DataFrame({column: values for predictor in predictors.values()
                         for column, values in predictor.predict(audios).items()})


def test_mixtures_without_references_get_the_predictors_scores_in_and_out(model_pt, test_dir, tmp_path):
    both = ["--mos", "dnsmos", "distillmos"]
    mixture_table = score_mixtures_table(test_dir, tmp_path / "mixtures.csv", *both)
    table, summary = run_evaluate(model_pt, test_dir, tmp_path, "--input-scores", str(tmp_path / "mixtures.csv"),
                                  "--workers", "2", *both)
    mixtures, _ = read_test_signals(read_test_folder(test_dir))
    direct_in, direct_out = predicted(mixtures), predicted(one_at_a_time(model_pt, mixtures))
    for column in ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "distillmos"):
        np.testing.assert_allclose(mixture_table[f"{column}_in"], direct_in[column], rtol=0, atol=MOS_TOL)
        np.testing.assert_allclose(table[f"{column}_in"], direct_in[column], rtol=0, atol=MOS_TOL)
        np.testing.assert_allclose(table[column], direct_out[column], rtol=0, atol=MOS_TOL)
    # the mixture without a reference: its reference metrics not applicable, its MOS real numbers
    unreferenced = table.iloc[-1]
    assert unreferenced[list(METRICS)].isna().all() and unreferenced.notes == NO_REFERENCE
    assert mixture_table.iloc[-1][["sdr_in_db", "estoi_in", "pesq_in"]].isna().all()
    assert mixture_table.iloc[-1].notes == NO_REFERENCE
    assert summary["n_without_reference"] == 1 and summary["n_nonintrusive"] == 6
    assert summary["dnsmos_ovrl"] == pytest.approx(direct_out["dnsmos_ovrl"].mean(), abs=MOS_TOL)
    assert summary["dnsmos_model"].startswith("dnsmos") and summary["distillmos_reason"] == ""


def test_max_utterances_scores_the_same_spread_mixtures_in_and_out(model_pt, test_dir, tmp_path):
    mixture_table = score_mixtures_table(test_dir, tmp_path / "mixtures.csv", "--mos", "distillmos",
                                         "--max-utterances", "2")
    table, summary = run_evaluate(model_pt, test_dir, tmp_path, "--input-scores", str(tmp_path / "mixtures.csv"),
                                  "--mos", "distillmos", "--max-utterances", "2", "--workers", "1")
    scored = [0, 5]  # the first and the last of six
    for column, frame in (("distillmos_in", mixture_table), ("distillmos_in", table), ("distillmos", table)):
        assert list(np.flatnonzero(frame[column].notna())) == scored, column
    assert "dnsmos_ovrl" not in table.columns and summary["n_nonintrusive"] == 2


@pytest.fixture(scope="module")
def spoken_dir(tmp_path_factory):
    """Two spoken sentences with their text and one without, in light noise, with clean references."""
    folder = tmp_path_factory.mktemp("spoken")
    rng = np.random.default_rng(1)
    rows = []
    for i, text in enumerate(SPOKEN):
        clean = render_flite(text or "Thank you.", "kal16")
        write_audio(folder / f"clean/c{i}.wav", clean)
        write_audio(folder / f"mix/m{i}.wav", clean + 0.01 * rng.standard_normal(clean.size).astype(np.float32))
        rows.append({"mixture_id": f"m{i}", "mixture": f"mix/m{i}.wav", "clean": f"clean/c{i}.wav",
                     "noise_id": "white", "snr_db": 20.0, "text": text})
    pd.DataFrame(rows).to_csv(folder / "test.csv", index=False)
    return folder


SPOKEN = ["The sun is shining today.", "Please open the door.", ""]


def test_wer_of_mixture_and_output_against_the_test_sets_text(model_pt, spoken_dir, tmp_path):
    mixture_table = score_mixtures_table(spoken_dir, tmp_path / "mixtures.csv", "--mos", "--asr", "pocketsphinx")
    with_input, summary = run_evaluate(model_pt, spoken_dir, tmp_path / "read", "--input-scores",
                                       str(tmp_path / "mixtures.csv"), "--mos", "--asr", "pocketsphinx")
    computed, _ = run_evaluate(model_pt, spoken_dir, tmp_path / "computed", "--mos", "--asr", "pocketsphinx")
    mixtures, _ = read_test_signals(read_test_folder(spoken_dir))
    enhanced = one_at_a_time(model_pt, mixtures)
    asr = PocketsphinxTranscriber()
    for i, text in enumerate(SPOKEN[:2]):
        for column, audio in (("wer_in", mixtures[i]), ("wer", enhanced[i])):
            errors, words = word_errors(text, asr.transcribe(audio))
            for table in (with_input, computed):
                assert table[column][i] == pytest.approx(errors / words, abs=1e-4), column
                assert table.reference_words[i] == words
        assert mixture_table.wer_in[i] == with_input.wer_in[i]
    assert with_input.iloc[2][["wer_in", "wer"]].isna().all() and with_input.notes[2] == "wer: no transcript"
    assert (with_input.asr == "pocketsphinx-en-us").all() and summary["asr"] == "pocketsphinx-en-us"
    words = with_input.reference_words[:2]
    assert summary["wer_corpus"] == pytest.approx((with_input.wer[:2] * words).sum() / words.sum())


def test_mixture_scores_without_the_requested_columns_stop_the_job_first(model_pt, test_dir, tmp_path, monkeypatch):
    score_mixtures_table(test_dir, tmp_path / "mixtures.csv", "--mos", "distillmos")
    monkeypatch.setattr(evaluate, "load_checkpoint", lambda path: pytest.fail("model read before the check"))
    with pytest.raises(ValueError, match=r"mixtures\.csv: no columns dnsmos_sig_in, dnsmos_bak_in, dnsmos_ovrl_in"):
        run_evaluate(model_pt, test_dir, tmp_path / "eval", "--input-scores", str(tmp_path / "mixtures.csv"),
                     "--mos", "dnsmos", "distillmos")
    assert not (tmp_path / "eval").exists()


def test_on_a_gpu_distillmos_runs_before_the_gpu_is_given_back_and_dnsmos_after(
        model_pt, test_dir, tmp_path, monkeypatch):
    events = []

    class Predictor:
        def __init__(self, name, uses_gpu, device):
            self.name, self.uses_gpu, self.model_name = name, uses_gpu, f"{name} (test)"
            self.columns, self.device = nonintrusive.MOS_COLUMNS[name], device

        def predict(self, audios, progress=True):
            events.append(f"{self.name} on {self.device}")
            return {column: [3.0] * len(audios) for column in self.columns}

    def load(names, device="cpu", onnx_threads=0):
        return {name: Predictor(name, name == "distillmos", device) for name in names}, {}

    monkeypatch.setattr(evaluate, "resolve_device", lambda device: "cuda")
    monkeypatch.setattr(evaluate, "enhance_mixtures", lambda model, mixtures, *args, **kwargs: mixtures)
    monkeypatch.setattr(evaluate, "give_back_device", lambda device: events.append(f"give back {device}"))
    monkeypatch.setattr(nonintrusive, "load_predictors", load)
    monkeypatch.setattr(nonintrusive, "_process_predictors", {})
    table, _ = run_evaluate(model_pt, test_dir, tmp_path, "--workers", "1", "--mos", "dnsmos", "distillmos")
    assert events[:3] == ["distillmos on cuda", "distillmos on cuda", "give back cuda"]  # output, then mixture
    assert set(events[3:]) == {"dnsmos on cpu"}
    assert (table[["distillmos", "distillmos_in", "dnsmos_ovrl", "dnsmos_ovrl_in"]] == 3.0).all().all()
