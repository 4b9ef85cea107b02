"""TTS scoring as the challenge scored: SECS (resemblyzer, x-vector), Whisper WER, predicted MOS.

The x-vector and Whisper models are tiny random checkpoints of the real architectures
(workflow_scripts/testing/tiny_models.py) loaded through the same code as the released
weights; DNSMOS and DistillMOS run with the weights their wheels ship; UTMOS has no weights
here, so its column must stay empty with the reason given.
"""

import json
import math
import os

import numpy as np
import pandas as pd
import pytest
import torch

from workflow_scripts import score_tts, score_tts_cpu
from workflow_scripts.scoring.asr import ASRUnavailable, WhisperTranscriber, load_asr
from workflow_scripts.files.audio import SAMPLE_RATE, write_audio
from workflow_scripts.scoring.mos import UTMOSPredictor, load_predictors, resolve_utmos_weights
from workflow_scripts.scoring.tables import tts_markdown
from workflow_scripts.scoring.results import read_tts_scores
from workflow_scripts.scoring.speaker_similarity import load_xvector_encoder
from workflow_scripts.testing.tiny_models import build_tiny_whisper, build_tiny_xvector
from workflow_scripts.world.voices import render_flite

SENTENCES = ["The sun is shining today.", "Please open the door."]
ENROLLMENT_TEXT = "My name is Paul and I live in a small town. Every morning I walk to work."


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """An enrollment clip, a two-utterance speech folder (flite kal16), and tiny random models."""
    root = tmp_path_factory.mktemp("scoring")
    enrollment_wav = root / "enrollment.wav"
    write_audio(enrollment_wav, render_flite(ENROLLMENT_TEXT, "kal16"))
    speech_dir = root / "speech"
    rows = []
    for index, text in enumerate(SENTENCES):
        audio = render_flite(text, "kal16")
        write_audio(speech_dir / f"utt{index}.wav", audio)
        rows.append({"utt_id": f"utt{index}", "path": f"utt{index}.wav", "text": text,
                     "duration_s": audio.size / SAMPLE_RATE})
    pd.DataFrame(rows).to_csv(speech_dir / "manifest.csv", index=False)
    return {"root": root, "enrollment": enrollment_wav, "speech": speech_dir, "models": root / "models",
            "whisper": build_tiny_whisper(root / "checkpoints"),
            "xvector": build_tiny_xvector(root / "xvector")}


def score_args(world, out_name, *extra):
    out = world["root"] / out_name
    return ["--enrollment", str(world["enrollment"]), "--speech-dir", str(world["speech"]),
            "--model-dir", str(world["models"]), "--device", "cpu",
            "--out-csv", str(out.with_suffix(".csv")), "--out-summary", str(out.with_suffix(".json")), *extra]


@pytest.fixture(scope="module")
def scored(world):
    """score_tts end to end: auto ASR with a Whisper checkpoint file, tiny x-vector, all MOS predictors."""
    score_tts.main(score_args(world, "tts", "--asr", "auto", "--whisper-model", str(world["whisper"]),
                              "--no-whisper-temperature-fallback", "--secs-xvector-model", world["xvector"],
                              "--mos", "utmos", "dnsmos", "distillmos"))
    out = world["root"] / "tts"
    return pd.read_csv(out.with_suffix(".csv")), json.loads(out.with_suffix(".json").read_text())


def test_score_tts_fills_every_score_it_can(scored):
    table, summary = scored
    assert len(table) == summary["n_utterances"] == len(SENTENCES)
    assert table.secs_resemblyzer.between(-1, 1).all() and table.secs_xvector.between(-1, 1).all()
    assert summary["secs_mean"] == summary["secs_resemblyzer_mean"]  # the first name still holds
    assert summary["secs_xvector_model"].endswith("xvector") and summary["secs_xvector_reason"] == ""
    assert summary["secs_xvector_mean"] == pytest.approx(table.secs_xvector.mean())
    assert summary["secs_xvector_ci95_low"] <= summary["secs_xvector_mean"] <= summary["secs_xvector_ci95_high"]
    # auto + a checkpoint file -> Whisper; random weights say nothing useful, but the columns fill
    assert summary["asr"] == "whisper-tiny-random" and (table.asr == "whisper-tiny-random").all()
    assert "tiny-random.pt" in summary["asr_note"] and summary["text_normalizer"] == "whisper-english"
    assert table.wer.notna().all() and (table.wer >= 0).all() and np.isfinite(table.wer).all()
    assert summary["wer"] == pytest.approx(table.word_errors.sum() / table.reference_words.sum())
    for column in ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808", "distillmos"):
        assert table[column].between(1, 5).all(), column
        assert summary[f"{column}_mean"] == pytest.approx(table[column].mean())
    assert "speechmos" in summary["dnsmos_model"] and "distillmos" in summary["distillmos_model"]
    assert summary["dnsmos_reason"] == summary["distillmos_reason"] == ""


def run_cpu_job(world, out, *mos):
    """score_tts_cpu.main in this process, its torch threads put back after (a job has its own)."""
    threads = torch.get_num_threads()
    try:
        score_tts_cpu.main(["--enrollment", str(world["enrollment"]), "--speech-dir", str(world["speech"]),
                            "--mos", *mos, "--out", str(out)])
    finally:
        torch.set_num_threads(threads)


def test_scores_read_from_the_cpu_job_give_the_same_table_and_summary(scored, world):
    """tts_scoring.cpu_job: score_tts_cpu's Resemblyzer SECS and DNSMOS, read by score_tts, make the
    table and summary of a score_tts job that ran every model itself."""
    cpu_file = world["root"] / "split.cpu.json"
    run_cpu_job(world, cpu_file, "utmos", "dnsmos", "distillmos")
    written = json.loads(cpu_file.read_text())
    assert written["utterances"] == ["utt0", "utt1"] and list(written["models"]) == ["dnsmos"]
    assert set(written["scores"]) == {"secs_resemblyzer", "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808"}
    score_tts.main(score_args(world, "split", "--asr", "auto", "--whisper-model", str(world["whisper"]),
                              "--no-whisper-temperature-fallback", "--secs-xvector-model", world["xvector"],
                              "--mos", "utmos", "dnsmos", "distillmos", "--cpu-scores", str(cpu_file)))
    table, summary = scored
    out = world["root"] / "split"
    # the same models; DNSMOS with one ONNX thread here, so equal to float rounding
    pd.testing.assert_frame_equal(pd.read_csv(out.with_suffix(".csv")), table, rtol=1e-6)
    split = json.loads(out.with_suffix(".json").read_text())
    assert split.keys() == summary.keys()
    for key, value in summary.items():
        assert split[key] == (pytest.approx(value, rel=1e-6) if isinstance(value, float) else value), key


def test_a_cpu_score_file_of_other_utterances_stops_score_tts_before_any_output(world, tmp_path):
    cpu_file = tmp_path / "two.cpu.json"
    run_cpu_job(world, cpu_file, "dnsmos")
    out_csv, out_json = tmp_path / "x.csv", tmp_path / "x.json"
    base = ["--enrollment", str(world["enrollment"]), "--speech-dir", str(world["speech"]), "--asr", "none",
            "--secs-xvector-model", "none", "--device", "cpu", "--cpu-scores", str(cpu_file),
            "--out-csv", str(out_csv), "--out-summary", str(out_json)]
    with pytest.raises(ValueError, match=rf"{cpu_file}: scores 2 utterances that are not the 1"):
        score_tts.main(base + ["--mos", "dnsmos", "--max-utterances", "1"])
    run_cpu_job(world, cpu_file, "distillmos")  # no CPU predictor: no DNSMOS
    with pytest.raises(ValueError, match=rf"{cpu_file}: has no dnsmos_ovrl, .*dnsmos \(made with another --mos\)"):
        score_tts.main(base + ["--mos", "dnsmos", "distillmos"])
    assert not out_csv.exists() and not out_json.exists()


def test_missing_utmos_weights_leave_the_column_empty_and_say_why(scored, world):
    table, summary = scored
    assert table.utmos.isna().all()
    assert summary["utmos_mean"] is None and summary["utmos_model"] is None
    assert "not available offline" in summary["utmos_reason"]
    assert str(world["models"] / "huggingface") in summary["utmos_reason"]


def test_aggregate_tts_table_shows_every_score_and_each_reason_once(scored, world):
    tts = read_tts_scores([
        {"source": "gt", "speaker": "spk01", "path": str(world["root"] / "tts.json")},
        {"source": "clone", "speaker": "spk01", "path": str(world["root"] / "tts.json")},
    ])
    markdown = tts_markdown(tts)
    header = next(line for line in markdown.splitlines() if line.startswith("| Source |"))
    titles = [cell.strip() for cell in header.strip("|").split("|")]
    assert titles[:7] == ["Source", "SECS x-vector (cos)", "SECS resemblyzer (cos)", "WER (%)", "UTMOS (1-5)",
                          "DNSMOS OVRL (1-5)", "DistillMOS (1-5)"]
    gt_row = next(line for line in markdown.splitlines() if line.startswith("| gt |"))
    cells = [cell.strip() for cell in gt_row.strip("|").split("|")]
    summary = scored[1]
    assert cells[1] == f"{summary['secs_xvector_mean']:.3f}"
    assert cells[2] == f"{summary['secs_resemblyzer_mean']:.3f}"
    assert cells[3] == f"{100 * summary['wer']:.1f}"
    assert cells[4] == "n/a¹"  # UTMOS: no weights offline
    assert cells[5] == f"{summary['dnsmos_ovrl_mean']:.2f}" and cells[6] == f"{summary['distillmos_mean']:.2f}"
    # the reason once, below the tables, however many cells cite it
    assert markdown.count(summary["utmos_reason"]) == 1
    assert f"- ¹ UTMOS: {summary['utmos_reason']}" in markdown
    assert markdown.count("n/a¹") == 4  # per source (2) and per speaker (2)
    # per-speaker tables stay narrow
    for line in markdown.splitlines():
        if line.startswith("| Source | Speaker |"):
            assert line.count("|") - 1 <= 9, line
    assert "whisper-tiny-random" in markdown


def test_aggregate_reads_summaries_written_before_these_scores(tmp_path):
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"n_utterances": 8, "secs_mean": 0.9, "wer": 0.25, "asr": "pocketsphinx-en-us",
                               "asr_reason": ""}))
    tts = read_tts_scores([{"source": "gt", "speaker": "spk01", "path": str(old)}])
    assert tts.secs[0] == 0.9 and tts.wer[0] == 0.25 and math.isnan(tts.utmos[0])
    assert "n/a¹" in tts_markdown(tts) and "UTMOS: not in old.json" in tts_markdown(tts)
    with pytest.raises(FileNotFoundError, match="missing.json: TTS score summary not found"):
        read_tts_scores([{"source": "gt", "speaker": "spk01", "path": str(tmp_path / "missing.json")}])


def test_batched_whisper_gives_the_text_of_one_transcribe_call_per_file(world):
    transcriber = WhisperTranscriber(str(world["whisper"]), world["models"], "cpu", batch_size=4,
                                     temperature_fallback=False)
    clip = render_flite("Hello there, how are you?", "kal16")
    clips = [clip, clip[: SAMPLE_RATE // 2], np.zeros(SAMPLE_RATE, np.float32), np.tile(clip, 20)]  # last > 30 s
    expected = [transcriber.model.transcribe(c, language="en", temperature=0.0, fp16=False)["text"].strip()
                for c in clips]
    assert transcriber.transcribe_batch(clips) == expected
    assert transcriber.calls_to_transcribe >= 1  # the clip past 30 s


def test_whisper_size_weights_are_checked_never_downloaded(world, tmp_path):
    with pytest.raises(ASRUnavailable, match=r"large-v3\.pt in .*whisper.*no download"):
        load_asr("whisper", tmp_path / "models", whisper_model="large-v3")
    corrupt = tmp_path / "models" / "whisper" / "large-v3.pt"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(world["whisper"].read_bytes())  # a Whisper checkpoint, but not the released one
    transcriber = load_asr("auto", tmp_path / "models", whisper_model="large-v3")
    assert transcriber.name == "pocketsphinx-en-us" and "SHA256 does not match" in transcriber.note
    with pytest.raises(FileNotFoundError, match="no_such.pt: Whisper checkpoint file not found"):
        load_asr("auto", tmp_path / "models", whisper_model=str(tmp_path / "no_such.pt"))


def test_explicit_whisper_without_weights_fails_before_any_output(world, tmp_path):
    out_csv, out_json = tmp_path / "x.csv", tmp_path / "x.json"
    with pytest.raises(ASRUnavailable, match="large-v3"):
        score_tts.main(["--enrollment", str(world["enrollment"]), "--speech-dir", str(world["speech"]),
                        "--asr", "whisper", "--model-dir", str(tmp_path / "models"), "--device", "cpu",
                        "--out-csv", str(out_csv), "--out-summary", str(out_json)])
    assert not out_csv.exists() and not out_json.exists()


def test_xvector_hub_model_missing_is_a_reason_and_stays_offline(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    encoder, reason = load_xvector_encoder("speechbrain/spkrec-xvect-voxceleb", tmp_path / "models", "cpu")
    assert encoder is None and "spkrec-xvect-voxceleb" in reason
    assert "HF_HUB_OFFLINE" not in os.environ  # restored after the offline load
    assert load_xvector_encoder("none")[0] is None
    with pytest.raises(FileNotFoundError, match="not a speechbrain model folder"):
        load_xvector_encoder(str(tmp_path), tmp_path / "models", "cpu")  # an explicit folder must load


def test_utmos_weights_are_checked(tmp_path):
    import torch

    predictors, reasons = load_predictors(["utmos"], "Blinorot/UTMOS-PyTorch", tmp_path / "models")
    assert predictors == {} and "not available offline" in reasons["utmos"]
    with pytest.raises(FileNotFoundError, match="no utmos_state_dict.pt"):
        UTMOSPredictor(str(tmp_path), tmp_path / "models")
    wrong = tmp_path / "wrong.pt"
    torch.save({"weight": torch.zeros(2)}, wrong)
    with pytest.raises(ValueError, match="wrong.pt: not a UTMOS22 state dict"):
        UTMOSPredictor(str(wrong), tmp_path / "models")
    with pytest.raises(ValueError, match="unknown MOS predictor"):
        load_predictors(["pesq"])
    # where download_models puts the hub repo (snapshot_download into MODEL_DIR/huggingface/hub)
    repo = tmp_path / "filled" / "huggingface" / "hub" / "models--Blinorot--UTMOS-PyTorch"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit / "utmos_state_dict.pt").write_bytes(wrong.read_bytes())
    found = resolve_utmos_weights("Blinorot/UTMOS-PyTorch", tmp_path / "filled")
    assert found == repo / "snapshots" / commit / "utmos_state_dict.pt"


@pytest.mark.slow
def test_utmos_scores_with_a_full_size_random_state_dict(tmp_path):
    """The UTMOS22 architecture at its real size (about 100 M parameters), random weights, loaded from
    a folder as the converted hub weights are."""
    import torch
    from utmos_pytorch.utmos_torch import UTMOSModel

    torch.manual_seed(0)
    torch.save(UTMOSModel().state_dict(), tmp_path / "utmos_state_dict.pt")
    predictor = UTMOSPredictor(str(tmp_path), tmp_path / "models")
    scores = predictor.predict([render_flite("Good morning.", "kal16"), render_flite("Thank you.", "slt")])
    assert len(scores["utmos"]) == 2 and all(math.isfinite(s) for s in scores["utmos"])
    assert str(tmp_path) in predictor.model_name


def test_cpu_only_mos_runs_after_the_gpu_is_given_back(world, tmp_path, monkeypatch):
    """On a GPU, DNSMOS (onnxruntime on the CPU) runs after every device model is done and the
    GPU's memory and slot are released, whatever the order of --mos."""
    events = []

    class Predictor:
        def __init__(self, name, uses_gpu):
            self.name, self.model_name, self.uses_gpu = name, f"{name} (test)", uses_gpu
            self.columns = ("dnsmos_ovrl",) if name == "dnsmos" else ("distillmos",)

        def predict(self, audios):
            events.append(self.name)
            return {column: [3.0] * len(audios) for column in self.columns}

    class Encoder:
        name = "resemblyzer (test)"

        def __init__(self, device):
            events.append(f"encoder on {device}")

    monkeypatch.setattr(score_tts, "resolve_device", lambda device: "cuda")
    monkeypatch.setattr(score_tts, "open_asr", lambda *args: (None, "not run (test)"))
    monkeypatch.setattr(score_tts, "SpeakerEncoder", Encoder)
    monkeypatch.setattr(score_tts, "similarity_to_enrollment", lambda encoder, enrollment, audios, desc: [0.5] * len(audios))
    monkeypatch.setattr(score_tts, "load_xvector_encoder", lambda *args: (None, "not run (test)"))
    def load(names, *args, onnx_threads=0):
        events.append(f"onnx threads {onnx_threads}")
        return {"dnsmos": Predictor("dnsmos", False), "distillmos": Predictor("distillmos", True)}, {}

    monkeypatch.setattr(score_tts, "load_predictors", load)
    monkeypatch.setattr(score_tts, "give_back_device", lambda device: events.append(f"release {device}"))
    summary = score_tts.score_tts(world["enrollment"], world["speech"], tmp_path / "t.csv", tmp_path / "t.json",
                                  asr="none", mos=("dnsmos", "distillmos"))
    # DNSMOS on the job's threads (torch's), not one onnxruntime thread a core
    assert events == ["encoder on cuda", f"onnx threads {torch.get_num_threads()}", "distillmos", "release cuda", "dnsmos"]
    assert summary["dnsmos_ovrl_mean"] == 3.0 and summary["distillmos_mean"] == 3.0
