"""Bad inputs: each is refused with a message naming the file or config key and the problem, and leaves
no partial output behind (no output file or folder, no temporary `.*.tmp*` beside it); or, where the
documented behaviour is to go on (stereo, other sample rates, clipping), it goes on and says so."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from workflow_scripts import clone_voice, evaluate, finetune, score_mixtures, synthesize
from workflow_scripts.files.audio import SAMPLE_RATE, AudioError, read_audio, write_audio
from workflow_scripts.model.convtasnet import CheckpointError, build_model, save_checkpoint
from workflow_scripts.files.folders import DataError
from workflow_scripts.tts import BACKENDS, Backend, TTSBackend

from test_workflow import default_sheet, load_config, make_workdir, snakemake


def assert_no_output(out: Path) -> None:
    """Neither the output nor a temporary sibling of it exists."""
    out = Path(out)
    assert not out.exists(), f"{out} was left behind"
    if out.parent.is_dir():
        leftovers = sorted(p.name for p in out.parent.glob(".*.tmp*"))
        assert not leftovers, f"temporary files left in {out.parent}: {leftovers}"


def voiced(seconds: float, sample_rate: int = SAMPLE_RATE, channels: int = 1) -> np.ndarray:
    """A harmonic tone with a slow envelope, peak 0.5 (stands in for speech)."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    audio = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 6))
    audio *= 0.5 + 0.5 * np.sin(2 * np.pi * 1.5 * t) ** 2
    audio = (0.5 * audio / np.max(np.abs(audio))).astype(np.float32)
    return np.stack([audio] * channels, axis=1) if channels > 1 else audio


class RecordingBackend(TTSBackend):
    """Test double: its conditioning records what clone_voice passed it."""

    name = "recording"

    def compute_conditioning(self, enrollment, sample_rate):
        return {"num_samples": int(enrollment.size), "sample_rate": int(sample_rate),
                "ndim": int(enrollment.ndim)}


@pytest.fixture
def recording_backend(monkeypatch):
    monkeypatch.setitem(BACKENDS, "recording", Backend(f"{__name__}:RecordingBackend", "tts-offline"))
    return "recording"


def run_clone(enrollment: Path, out: Path, backend: str = "recording", *extra: str) -> None:
    clone_voice.main(["--backend", backend, "--enrollment", str(enrollment), "--out", str(out),
                      "--device", "cpu", *extra])


# ---- enrollment clip (clone_voice) ----------------------------------------------------------------


def _missing(path: Path) -> None:
    pass


def _text_as_wav(path: Path) -> None:
    path.write_text("this is not audio\n")


def _empty(path: Path) -> None:
    sf.write(path, np.zeros(0, np.float32), SAMPLE_RATE, subtype="FLOAT")


def _silent(path: Path) -> None:
    sf.write(path, np.zeros(3 * SAMPLE_RATE, np.float32), SAMPLE_RATE, subtype="FLOAT")


def _nan(path: Path) -> None:
    audio = voiced(3.0)
    audio[1000:1010] = np.nan
    sf.write(path, audio, SAMPLE_RATE, subtype="FLOAT")


def _short(path: Path) -> None:
    sf.write(path, voiced(1.0), SAMPLE_RATE, subtype="FLOAT")


@pytest.mark.parametrize(
    "make, message",
    [
        (_missing, r"enrollment\.wav: audio file not found"),
        (_text_as_wav, r"enrollment\.wav: cannot read audio"),
        (_empty, r"enrollment\.wav: audio file is empty \(0 samples\)"),
        (_silent, r"enrollment\.wav: enrollment clip is silent"),
        (_nan, r"enrollment\.wav: audio contains NaN or Inf samples"),
        (_short, r"enrollment\.wav: enrollment clip is 1\.00 s long, shorter than the minimum of "
                 r"2\.00 s \(--min-enrollment-s\)"),
    ],
    ids=["missing", "not-audio", "empty", "silent", "nan", "too-short"],
)
def test_bad_enrollment_is_refused(tmp_path, recording_backend, make, message):
    enrollment = tmp_path / "enrollment.wav"
    make(enrollment)
    out = tmp_path / "voices" / "spk.pt"
    with pytest.raises(AudioError, match=message):
        run_clone(enrollment, out, recording_backend, "--min-enrollment-s", "2.0")
    assert_no_output(out)


def test_unknown_tts_backend_is_refused(tmp_path):
    enrollment = tmp_path / "enrollment.wav"
    sf.write(enrollment, voiced(3.0), SAMPLE_RATE, subtype="FLOAT")
    out = tmp_path / "voices" / "spk.pt"
    with pytest.raises(KeyError, match="unknown TTS backend 'nosuchtts'; known backends: .*flite"):
        run_clone(enrollment, out, "nosuchtts")
    assert_no_output(out)


def test_stereo_enrollment_is_downmixed_with_a_warning(tmp_path, recording_backend, caplog):
    enrollment = tmp_path / "stereo.wav"
    sf.write(enrollment, voiced(3.0, channels=2), SAMPLE_RATE, subtype="FLOAT")
    out = tmp_path / "spk.pt"
    with caplog.at_level(logging.INFO):
        run_clone(enrollment, out, recording_backend)
    conditioning = torch.load(out, weights_only=False)["conditioning"]
    assert conditioning == {"num_samples": 3 * SAMPLE_RATE, "sample_rate": SAMPLE_RATE, "ndim": 1}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("stereo.wav: 2 channels, averaged to mono" in r.getMessage() for r in warnings)


def test_24khz_enrollment_is_resampled(tmp_path, recording_backend, caplog):
    enrollment = tmp_path / "hi_rate.wav"
    sf.write(enrollment, voiced(3.0, sample_rate=24000), 24000, subtype="FLOAT")
    out = tmp_path / "spk.pt"
    with caplog.at_level(logging.INFO):
        run_clone(enrollment, out, recording_backend)
    conditioning = torch.load(out, weights_only=False)["conditioning"]
    assert conditioning == {"num_samples": 3 * SAMPLE_RATE, "sample_rate": SAMPLE_RATE, "ndim": 1}
    assert any("hi_rate.wav: resampled from 24000 Hz to 16000 Hz" in r.getMessage() for r in caplog.records)


def test_clipped_audio_is_read_with_a_warning_naming_the_fraction(tmp_path, caplog):
    audio = voiced(2.0)
    audio[: audio.size // 20] = 1.0  # 5 % of the samples at full scale
    clipped_wav = tmp_path / "clipped.wav"
    sf.write(clipped_wav, audio, SAMPLE_RATE, subtype="FLOAT")
    with caplog.at_level(logging.WARNING, logger="workflow_scripts.files.audio"):
        assert read_audio(clipped_wav).size == audio.size
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("clipped.wav: 5.0% of samples are clipped" in m for m in messages), messages

    caplog.clear()
    clean_wav = tmp_path / "clean.wav"
    sf.write(clean_wav, voiced(2.0), SAMPLE_RATE, subtype="FLOAT")  # peak 0.5: not clipped
    with caplog.at_level(logging.WARNING, logger="workflow_scripts.files.audio"):
        read_audio(clean_wav)
    assert not [r for r in caplog.records if "clipped" in r.getMessage()]


# ---- sentences file (synthesize) ------------------------------------------------------------------


@pytest.fixture
def voice_pt(tmp_path, recording_backend):
    enrollment = tmp_path / "enrollment.wav"
    sf.write(enrollment, voiced(3.0), SAMPLE_RATE, subtype="FLOAT")
    out = tmp_path / "voice.pt"
    run_clone(enrollment, out, recording_backend)
    return out


@pytest.mark.parametrize(
    "lines, num, message",
    [
        (["One sentence.", "Two sentences.", ""], 3,
         r"sentences\.txt: has 2 non-empty lines, fewer than the 3 utterances requested \(--num-utterances\)"),
        (["One sentence.", "", "Three sentences."], 3, r"sentences\.txt: line 2 is empty"),
        (["One sentence.", "Two sentences.", "word " * 100], 3,
         r"sentences\.txt: line 3 has 499 characters, more than the maximum of 400"),
    ],
    ids=["too-few-lines", "empty-line", "over-long-line"],
)
def test_bad_sentences_file_fails_before_loading_a_model(tmp_path, voice_pt, monkeypatch, lines, num, message):
    def must_not_load(*args, **kwargs):
        raise AssertionError("the backend was loaded before the sentences were checked")

    monkeypatch.setattr(synthesize, "load_backend", must_not_load)
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("\n".join(lines) + "\n")
    out_dir = tmp_path / "speech" / "spk"
    with pytest.raises(ValueError, match=message):
        synthesize.main(["--backend", "recording", "--voice", str(voice_pt), "--sentences", str(sentences),
                         "--num-utterances", str(num), "--speaker", "spk", "--tts", "rec", "--device", "cpu",
                         "--out-dir", str(out_dir)])
    assert_no_output(out_dir)


# ---- speech and test folders, checkpoints (finetune, evaluate) --------------------------------------


def write_speech_folder(folder: Path, num: int) -> None:
    rows = []
    for i in range(num):
        path = f"wavs/u{i}.wav"
        write_audio(folder / path, voiced(1.0))
        rows.append({"utt_id": f"u{i}", "path": path, "text": "a tone", "duration_s": 1.0})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)


def write_test_folder(folder: Path, num: int = 2) -> None:
    rows = []
    rng = np.random.default_rng(0)
    for i in range(num):
        clean = voiced(1.0)
        mixture = clean + 0.1 * rng.standard_normal(clean.size).astype(np.float32)
        write_audio(folder / f"clean/c{i}.wav", clean)
        write_audio(folder / f"mix/m{i}.wav", mixture)
        rows.append({"mixture_id": f"m{i}", "mixture": f"mix/m{i}.wav", "clean": f"clean/c{i}.wav",
                     "noise_id": "white", "snr_db": 0.0})
    pd.DataFrame(rows).to_csv(folder / "test.csv", index=False)


def tiny_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    save_checkpoint(path, build_model("tiny"))
    return path


def test_finetune_speech_folder_too_small_for_the_data_size(tmp_path):
    speech = tmp_path / "speech"
    write_speech_folder(speech, 3)
    out_dir = tmp_path / "finetune" / "spk"
    with pytest.raises(DataError, match=r"speech: 3 utterances, fewer than num_val \+ num_train = 4 \+ 8 = 12"):
        finetune.main(["--init", str(tmp_path / "unused.pt"), "--speech-dir", str(speech),
                       "--num-train", "8", "--num-val", "4", "--noise-dir", str(tmp_path / "noises"),
                       "--out-dir", str(out_dir), "--device", "cpu"])
    assert_no_output(out_dir)


def evaluate_args(model: Path, test_dir: Path, out: Path) -> list[str]:
    return ["--model", str(model), "--test-dir", str(test_dir), "--out-csv", str(out / "spk.csv"),
            "--out-summary", str(out / "spk.json"), "--enhanced-dir", str(out / "enhanced"), "--device", "cpu"]


def assert_no_eval_output(out: Path) -> None:
    for name in ("spk.csv", "spk.json", "enhanced"):
        assert_no_output(out / name)


def test_evaluate_test_folder_without_test_csv(tmp_path):
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    out = tmp_path / "eval"
    with pytest.raises(AudioError, match=r"test/test\.csv: test table not found"):
        evaluate.main(evaluate_args(tmp_path / "unused.pt", test_dir, out))
    assert_no_eval_output(out)


def test_score_mixtures_with_a_clean_reference_of_another_length_says_so(tmp_path):
    test_dir = tmp_path / "test"
    write_audio(test_dir / "m0.wav", voiced(1.0))
    write_audio(test_dir / "m1.wav", voiced(1.0))
    write_audio(test_dir / "c0.wav", voiced(0.5))
    pd.DataFrame({"mixture_id": ["m0", "m1"], "mixture": ["m0.wav", "m1.wav"], "clean": ["c0.wav", ""],
                  "noise_id": ["n", "n"], "snr_db": [0.0, 0.0]}).to_csv(test_dir / "test.csv", index=False)
    out_csv = tmp_path / "scores.csv"
    with pytest.raises(AudioError, match=r"test/m0\.wav: 16000 samples, but clean .*test/c0\.wav has 8000"):
        score_mixtures.main(["--test-dir", str(test_dir), "--out-csv", str(out_csv)])
    assert_no_output(out_csv)


def test_evaluate_test_folder_with_a_missing_mixture(tmp_path):
    test_dir = tmp_path / "test"
    write_test_folder(test_dir)
    (test_dir / "mix" / "m1.wav").unlink()
    out = tmp_path / "eval"
    with pytest.raises(AudioError, match=r"test\.csv: 1 mixture files not found, e\.g\. .*mix/m1\.wav"):
        evaluate.main(evaluate_args(tmp_path / "unused.pt", test_dir, out))
    assert_no_eval_output(out)


def test_evaluate_checkpoint_with_mismatched_keys(tmp_path):
    test_dir = tmp_path / "test"
    write_test_folder(test_dir)
    model_pt = tiny_checkpoint(tmp_path / "model.pt")
    checkpoint = torch.load(model_pt, weights_only=False)
    dropped = sorted(checkpoint["model_state_dict"])[0]
    del checkpoint["model_state_dict"][dropped]
    checkpoint["model_state_dict"]["extra.weight"] = torch.zeros(1)
    torch.save(checkpoint, model_pt)
    out = tmp_path / "eval"
    with pytest.raises(CheckpointError, match=r"model\.pt: state dict does not match the model config"
                                              r"(?s:.*)Missing key.*" + dropped.replace(".", r"\.")):
        evaluate.main(evaluate_args(model_pt, test_dir, out))
    assert_no_eval_output(out)


def truncated_copy(path: Path) -> Path:
    """`path` cut to half its length, as a copy or a transfer that stopped leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_evaluate_truncated_checkpoint_says_to_delete_it(tmp_path):
    test_dir = tmp_path / "test"
    write_test_folder(test_dir)
    model_pt = truncated_copy(tiny_checkpoint(tmp_path / "model.pt"))
    out = tmp_path / "eval"
    with pytest.raises(CheckpointError, match=r"model\.pt: not a readable checkpoint \(truncated or corrupt: .*\);"
                                              r" if the workflow made it, delete it and rerun"):
        evaluate.main(evaluate_args(model_pt, test_dir, out))
    assert_no_eval_output(out)


def test_finetune_from_a_truncated_generalist_says_to_delete_it(tmp_path):
    speech, noises = tmp_path / "speech", tmp_path / "noises"
    write_speech_folder(speech, 4)
    write_audio(noises / "white.wav", voiced(1.0))
    pd.DataFrame({"noise_id": ["white"], "path": ["white.wav"], "kind": ["white"]}).to_csv(
        noises / "noises.csv", index=False)
    init = truncated_copy(tiny_checkpoint(tmp_path / "generalist.pt"))
    out_dir = tmp_path / "finetune" / "spk"
    with pytest.raises(CheckpointError, match=r"generalist\.pt: not a readable checkpoint \(truncated or corrupt"):
        finetune.main(["--init", str(init), "--speech-dir", str(speech), "--num-train", "2", "--num-val", "2",
                       "--noise-dir", str(noises), "--out-dir", str(out_dir), "--device", "cpu"])
    assert_no_output(out_dir)


def test_synthesize_truncated_voice_file_says_to_delete_it(tmp_path, voice_pt, monkeypatch):
    def must_not_load(*args, **kwargs):
        raise AssertionError("the backend was loaded before the voice file was read")

    monkeypatch.setattr(synthesize, "load_backend", must_not_load)
    truncated_copy(voice_pt)
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("One sentence.\n")
    out_dir = tmp_path / "speech" / "spk"
    with pytest.raises(ValueError, match=r"voice\.pt: not a readable voice conditioning file \(truncated or"
                                         r" corrupt: .*\); delete it and rerun: snakemake will rebuild it"):
        synthesize.main(["--backend", "recording", "--voice", str(voice_pt), "--sentences", str(sentences),
                         "--num-utterances", "1", "--speaker", "spk", "--tts", "rec", "--device", "cpu",
                         "--out-dir", str(out_dir)])
    assert_no_output(out_dir)


# ---- config and speaker sheet (snakemake -n) --------------------------------------------------------


@pytest.mark.parametrize(
    "mutate, sheet, messages",
    [
        (lambda c: c.update(data_sizes={}), None, ["data_sizes", "should be non-empty"]),
        (lambda c: c.update(enrollment={"min_seconds": -1.0}), None,
         ["min_seconds", "less than or equal to the minimum of 0"]),
        (lambda c: c.update(sources=[]), None, ["sources", "should be non-empty"]),
        (lambda c: None, "speaker\nspk01\n", ["seed", "is a required property"]),
    ],
    ids=["empty-data-sizes", "negative-enrollment-min-seconds", "empty-sources", "sheet-without-seed"],
)
def test_malformed_config_or_sheet_is_rejected_by_a_dry_run(tmp_path, mutate, sheet, messages):
    config = load_config("config.yaml")
    mutate(config)
    workdir = make_workdir(tmp_path, config, sheet or default_sheet())
    result = snakemake(workdir, "-n", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for message in messages:
        assert message in output, output[-3000:]
    assert not (workdir / "results").exists() and not (workdir / "data").exists()
