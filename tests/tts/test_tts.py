"""TTS stage: backends, clone_voice, synthesize (determinism, failures) and score_tts."""

import importlib
import inspect
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from workflow_scripts import clone_voice, score_tts, synthesize
from workflow_scripts.scoring.asr import simple_normalize, word_errors
from workflow_scripts.files.audio import SAMPLE_RATE, AudioError, write_audio
from workflow_scripts.scoring.speaker_similarity import mean_ci95
from workflow_scripts.tts import BACKENDS, Backend, TTSBackend, get_backend
from workflow_scripts.world.voices import render_flite

SENTENCES = [
    "The sun is shining today.",
    "I like to read good books.",
    "We went to the park.",
    "Please open the door.",
]
SLT_OPTIONS = '{"voice": "slt"}'
ENROLLMENT_TEXT = ("My name is Paul and I live in a small town. "
                   "Every morning I walk to work and drink some tea.")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """An enrollment clip of kal16 speech, a sentences file, and kal16 speech synthesized by the steps."""
    root = tmp_path_factory.mktemp("tts")
    enrollment_wav = root / "enrollment.wav"
    write_audio(enrollment_wav, render_flite(ENROLLMENT_TEXT, "kal16"))
    sentences_txt = root / "sentences.txt"
    sentences_txt.write_text("\n".join(SENTENCES) + "\n\n")  # a trailing empty line is not a sentence
    voice_pt = root / "voices" / "flite" / "spk.pt"
    clone_voice.main(["--backend", "flite", "--options-json", "{}", "--enrollment", str(enrollment_wav),
                      "--out", str(voice_pt), "--device", "cpu"])
    speech_dir = root / "speech" / "flite" / "spk"
    synthesize.main(synth_args(voice_pt, sentences_txt, len(SENTENCES), speech_dir))
    return {"root": root, "enrollment": enrollment_wav, "sentences": sentences_txt, "voice": voice_pt,
            "speech": speech_dir}


def synth_args(voice_pt, sentences_txt, num, out_dir, backend="flite", options="{}", *extra):
    return ["--backend", backend, "--options-json", options, "--voice", str(voice_pt),
            "--sentences", str(sentences_txt), "--num-utterances", str(num), "--speaker", "spk",
            "--tts", backend, "--seed", "7", "--device", "cpu", "--out-dir", str(out_dir), *extra]


def test_unknown_backend_names_the_known_ones():
    with pytest.raises(KeyError, match="flite.*world_clone"):
        get_backend("no_such_tts")


def test_flite_backend_ignores_enrollment_and_synthesizes_16k():
    backend = get_backend("flite")
    assert backend.sample_rate == SAMPLE_RATE
    conditioning = backend.compute_conditioning(np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    assert conditioning == {"voice": "kal16"}
    audio = backend.synthesize("Hello there.", conditioning, seed=0)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 0.3 * SAMPLE_RATE < audio.size < 3 * SAMPLE_RATE
    assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) > 0.01
    with pytest.raises(ValueError, match="unknown voice"):
        get_backend("flite", voice="nobody")


def test_registry_is_read_without_third_party_imports():
    """The workflow reads the registry while it is parsed: it must stay light."""
    probe = ("import sys, workflow_scripts.tts; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'scipy', 'torch', 'pandas')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_each_backend_declares_what_its_class_loads(name):
    """The registry entry names the class of the backend, and its default models are the class's."""
    backend = BACKENDS[name]
    module_name, class_name = backend.target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    assert issubclass(cls, TTSBackend) and cls.name == name
    parameters = inspect.signature(cls.__init__).parameters
    for option, model in backend.models.items():
        assert parameters[option].default == model.default, (name, option)
    needed = backend.models_needed({})
    assert sorted(sum(needed.values(), [])) == sorted(m.default for m in backend.models.values())
    if backend.models:
        option = next(iter(backend.models))
        assert "/my/model" in backend.models_needed({option: "/my/model"})[backend.models[option].kind]


def test_clone_voice_saves_conditioning(world):
    record = torch.load(world["voice"], weights_only=False)
    assert record["backend"] == "flite"
    assert record["options"] == {}
    assert record["conditioning"] == {"voice": "kal16"}


def test_clone_voice_rejects_short_enrollment(tmp_path):
    short_wav = tmp_path / "short.wav"
    write_audio(short_wav, render_flite("Hi.", "kal16"))
    out = tmp_path / "voice.pt"
    with pytest.raises(AudioError, match="short.wav.*shorter than"):
        clone_voice.main(["--backend", "flite", "--enrollment", str(short_wav), "--out", str(out),
                          "--min-enrollment-s", "2.0"])
    assert not out.exists()


def test_synthesize_writes_speech_folder(world):
    manifest = pd.read_csv(world["speech"] / "manifest.csv")
    assert list(manifest.columns) == ["utt_id", "path", "text", "duration_s", "seed"]
    assert list(manifest.text) == SENTENCES
    assert manifest.utt_id.is_unique and manifest.seed.is_unique
    for row in manifest.itertuples():
        audio, sr = sf.read(world["speech"] / row.path, dtype="float32")
        assert sr == SAMPLE_RATE and audio.ndim == 1
        assert row.duration_s == pytest.approx(audio.size / SAMPLE_RATE, abs=1e-5)
        assert np.max(np.abs(audio)) == pytest.approx(0.9, abs=1e-4)  # peak-normalised
    assert pd.read_csv(world["speech"] / "failures.csv").empty


def test_synthesize_is_deterministic(world, tmp_path):
    rerun_dir = tmp_path / "rerun"
    synthesize.main(synth_args(world["voice"], world["sentences"], len(SENTENCES), rerun_dir))
    first, second = (pd.read_csv(d / "manifest.csv") for d in (world["speech"], rerun_dir))
    pd.testing.assert_frame_equal(first, second)
    for path in first.path:
        assert np.array_equal(sf.read(world["speech"] / path)[0], sf.read(rerun_dir / path)[0])


def test_synthesize_too_few_sentences_fails_before_work(world, tmp_path, monkeypatch):
    def must_not_load(*args, **kwargs):
        raise AssertionError("the backend was loaded before the sentences were checked")

    monkeypatch.setattr(synthesize, "load_backend", must_not_load)
    out_dir = tmp_path / "out"
    with pytest.raises(ValueError, match=r"sentences\.txt.*4 non-empty lines.*10"):
        synthesize.main(synth_args(world["voice"], world["sentences"], 10, out_dir))
    assert not out_dir.exists()


class FlakyBackend(TTSBackend):
    """Test double for the failure path only: raises on the first attempt (seed) of utterance 1 and
    returns NaN for utterance 2 whatever the seed; its audio is a tone, never scored."""

    name = "flaky"
    sample_rate = 22050
    calls: list = []

    def compute_conditioning(self, enrollment, sample_rate):
        return {}

    def synthesize(self, text, conditioning, seed):
        FlakyBackend.calls.append((text, seed))
        if text == SENTENCES[1] and seed == synthesize.utterance_seed(7, "spk", "flaky", 1, attempt=0):
            raise RuntimeError("first attempt fails")
        if text == SENTENCES[2]:
            return np.full(1000, np.nan, np.float32)
        t = np.arange(self.sample_rate // 2) / self.sample_rate
        return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_synthesize_retries_then_records_failures(world, tmp_path, monkeypatch):
    monkeypatch.setitem(BACKENDS, "flaky", Backend(f"{__name__}:FlakyBackend", "tts-offline"))
    monkeypatch.setattr(FlakyBackend, "calls", [])
    voice_pt = tmp_path / "flaky.pt"
    clone_voice.main(["--backend", "flaky", "--enrollment", str(world["enrollment"]), "--out", str(voice_pt)])

    strict_dir = tmp_path / "strict"
    with pytest.raises(RuntimeError, match="only 3 of 4.*--min-utterances 4"):
        synthesize.main(synth_args(voice_pt, world["sentences"], 4, strict_dir, "flaky"))
    assert not strict_dir.exists()

    FlakyBackend.calls.clear()
    out_dir = tmp_path / "lenient"
    synthesize.main(synth_args(voice_pt, world["sentences"], 4, out_dir, "flaky", "{}",
                               "--min-utterances", "3", "--max-retries", "2"))
    manifest = pd.read_csv(out_dir / "manifest.csv")
    assert list(manifest.text) == [SENTENCES[0], SENTENCES[1], SENTENCES[3]]
    retried = manifest.set_index("text").seed[SENTENCES[1]]
    assert retried == synthesize.utterance_seed(7, "spk", "flaky", 1, attempt=1)
    failures = pd.read_csv(out_dir / "failures.csv")
    assert failures.to_dict("records") == [
        {"utt_index": 2, "text": SENTENCES[2], "reason": "output contains NaN or Inf"}]
    bad_seeds = [seed for text, seed in FlakyBackend.calls if text == SENTENCES[2]]
    assert len(set(bad_seeds)) == 3  # first try + 2 retries, each with a new seed
    assert sf.info(out_dir / manifest.path[0]).samplerate == SAMPLE_RATE


def test_synthesize_rejects_voice_of_other_backend(world, tmp_path, monkeypatch):
    monkeypatch.setitem(BACKENDS, "flaky", Backend(f"{__name__}:FlakyBackend", "tts-offline"))
    with pytest.raises(ValueError, match="spk.pt.*'flite', not 'flaky'"):
        synthesize.main(synth_args(world["voice"], world["sentences"], 2, tmp_path / "x", "flaky"))


@pytest.fixture(scope="module")
def kal16_scores(world):
    out_csv, out_json = world["root"] / "scores.csv", world["root"] / "scores.json"
    score_tts.main(["--enrollment", str(world["enrollment"]), "--speech-dir", str(world["speech"]),
                    "--asr", "auto", "--model-dir", str(world["root"] / "models"), "--device", "cpu",
                    "--out-csv", str(out_csv), "--out-summary", str(out_json)])
    return pd.read_csv(out_csv), json.loads(out_json.read_text())


def test_score_tts_secs_and_pocketsphinx_wer(kal16_scores):
    table, summary = kal16_scores
    assert len(table) == summary["n_utterances"] == len(SENTENCES)
    assert table.secs_resemblyzer.between(-1, 1).all()
    assert summary["secs_ci95_low"] <= summary["secs_mean"] <= summary["secs_ci95_high"]
    assert summary["asr"] == "pocketsphinx-en-us"  # Whisper is not installed here: auto falls back
    assert (table.asr == summary["asr"]).all()
    assert "Whisper" in summary["asr_note"]
    assert summary["wer"] == pytest.approx(table.word_errors.sum() / table.reference_words.sum())
    assert summary["wer"] < 0.6
    assert summary["wer_mean_per_utterance"] == pytest.approx(table.wer.mean())


def test_score_tts_without_asr_and_same_voice_scores_higher(world, kal16_scores, tmp_path):
    slt_voice, slt_dir = tmp_path / "slt.pt", tmp_path / "slt"
    with pytest.raises(ValueError, match="spk.pt.*made with options"):
        synthesize.main(synth_args(world["voice"], world["sentences"], 2, slt_dir, "flite", SLT_OPTIONS))
    clone_voice.main(["--backend", "flite", "--options-json", SLT_OPTIONS, "--enrollment",
                      str(world["enrollment"]), "--out", str(slt_voice)])
    synthesize.main(synth_args(slt_voice, world["sentences"], len(SENTENCES), slt_dir, "flite", SLT_OPTIONS))
    out_csv, out_json = tmp_path / "slt.csv", tmp_path / "slt.json"
    score_tts.main(["--enrollment", str(world["enrollment"]), "--speech-dir", str(slt_dir), "--asr", "none",
                    "--device", "cpu", "--out-csv", str(out_csv), "--out-summary", str(out_json)])
    table, summary = pd.read_csv(out_csv), json.loads(out_json.read_text())
    assert table.wer.isna().all() and table.asr_text.isna().all()
    assert summary["wer"] is None and summary["asr"] is None and "none" in summary["asr_reason"]
    assert summary["secs_mean"] < kal16_scores[1]["secs_mean"]
    assert table.secs_resemblyzer.max() < kal16_scores[0].secs_resemblyzer.min()


def test_wer_normalisation_and_ci():
    assert simple_normalize("Don't stop: 21 men, 3rd day!") == "dont stop twenty one men third day"
    assert word_errors("The cat sat.", "the cat sat") == (0, 3)
    assert word_errors("The cat sat.", "") == (3, 3)
    mean, low, high = mean_ci95([1.0, 2.0, 3.0])
    assert mean == 2.0 and high - mean == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert math.isnan(mean_ci95([1.0])[1])
