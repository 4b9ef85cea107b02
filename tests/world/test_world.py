"""The demo world: voices, noises, build_world, build_background and the world_clone TTS."""

import builtins
import json
import pathlib

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from workflow_scripts import build_background, build_world
from workflow_scripts.files.audio import SAMPLE_RATE, power, read_audio
from workflow_scripts.world.noises import NOISE_KINDS, draw_noise_set, make_noise
from workflow_scripts.scoring.speaker_similarity import SpeakerEncoder
from workflow_scripts.tts import get_backend
from workflow_scripts.world.voices import VoiceParams, random_voice, render_flite, speak

SEEDS = {"spkA": 1, "spkB": 2, "spkC": 4}
NUM_SENTENCES, NUM_TEST, NUM_NOISES = 4, 2, 2
ENROLLMENT_S = (5.0, 10.0)


def world_args(speaker, seed, sentences, out_dir, num_sentences=NUM_SENTENCES):
    return [
        "--speaker", speaker, "--seed", str(seed), "--sentences", str(sentences),
        "--num-sentences", str(num_sentences), "--num-test-utterances", str(NUM_TEST),
        "--num-noises", str(NUM_NOISES), "--noise-seconds", "4", "--test-snrs", "-2.5", "0", "2.5",
        "--enrollment-seconds", *map(str, ENROLLMENT_S), "--out-dir", str(out_dir),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def pool_txt(repo_dir):
    return repo_dir / "workflow_scripts" / "data" / "sentences.txt"


@pytest.fixture(scope="module")
def worlds(tmp_path_factory, pool_txt):
    """Three small target speakers."""
    root = tmp_path_factory.mktemp("demo")
    for speaker, seed in SEEDS.items():
        build_world.main(world_args(speaker, seed, pool_txt, root / speaker))
    return root


@pytest.fixture(scope="module")
def encoder():
    return SpeakerEncoder()


def wavs_of(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*.wav"))


# ---- library ----------------------------------------------------------------------------------


def test_render_flite_and_speak_give_16k_float32():
    plain = render_flite("A short test sentence.", "kal")  # kal is an 8 kHz voice
    assert plain.dtype == np.float32 and plain.ndim == 1 and 0.8 * SAMPLE_RATE < plain.size < 4 * SAMPLE_RATE
    voice = random_voice(np.random.default_rng(0), ["awb", "slt"])
    assert VoiceParams.from_dict(voice.to_dict()) == voice
    audio = speak("A short test sentence.", voice)
    assert audio.dtype == np.float32 and np.isclose(np.max(np.abs(audio)), 0.9)
    with pytest.raises(ValueError, match="empty"):
        render_flite("  ")
    with pytest.raises(ValueError, match="unknown flite voice"):
        render_flite("hello", "nobody")


def test_noises_are_deterministic_long_and_not_silent(pool_txt):
    sentences = pool_txt.read_text().splitlines()[:20]
    for kind in NOISE_KINDS:
        first = make_noise(kind, np.random.default_rng(5), 4.0, sentences=sentences)
        again = make_noise(kind, np.random.default_rng(5), 4.0, sentences=sentences)
        assert first.size == 4 * SAMPLE_RATE and first.dtype == np.float32, kind
        assert np.array_equal(first, again) and power(first) > 1e-5, kind
    kinds = [n["kind"] for n in draw_noise_set(np.random.default_rng(1), 5, 4.0, sentences)]
    assert len(set(kinds)) == 5
    with pytest.raises(ValueError, match="sentences"):
        make_noise("babble", np.random.default_rng(0), 4.0)


# ---- build_world ------------------------------------------------------------------------------


def test_build_world_is_deterministic_and_nested(worlds, pool_txt, tmp_path):
    """Same seed, fewer sentences: the same files, and the gt speech is a prefix of the larger one's."""
    first, again = worlds / "spkA", tmp_path / "spkA"
    build_world.main(world_args("spkA", SEEDS["spkA"], pool_txt, again, num_sentences=NUM_SENTENCES - 2))
    shared = wavs_of(again)
    assert set(shared) <= set(wavs_of(first)) and len(shared) == len(wavs_of(first)) - 2
    for path in shared:
        assert np.array_equal(sf.read(first / path)[0], sf.read(again / path)[0]), path
    for name in ["voice.json", "noises/noises.csv", "test/test.csv"]:
        assert (first / name).read_text() == (again / name).read_text(), name
    first_gt, again_gt = (pd.read_csv(d / "gt" / "manifest.csv") for d in (first, again))
    assert again_gt.equals(first_gt.head(NUM_SENTENCES - 2))
    assert (first / "sentences.txt").read_text().startswith((again / "sentences.txt").read_text())


def test_build_world_layout_and_formats(worlds):
    for speaker in SEEDS:
        folder = worlds / speaker
        enrollment, sr = sf.read(folder / "enrollment.wav", dtype="float32")
        assert sr == SAMPLE_RATE and enrollment.ndim == 1
        assert ENROLLMENT_S[0] <= enrollment.size / SAMPLE_RATE <= ENROLLMENT_S[1]

        sentences = (folder / "sentences.txt").read_text().splitlines()
        gt = pd.read_csv(folder / "gt" / "manifest.csv")
        assert list(gt.columns[:4]) == ["utt_id", "path", "text", "duration_s"]
        assert len(gt) == len(sentences) == NUM_SENTENCES and list(gt.text) == sentences
        for row in gt.itertuples():
            audio, sr = sf.read(folder / "gt" / row.path, dtype="float32")
            assert sr == SAMPLE_RATE and abs(audio.size / SAMPLE_RATE - row.duration_s) < 1e-3

        noises = pd.read_csv(folder / "noises" / "noises.csv")
        assert list(noises.columns[:3]) == ["noise_id", "path", "kind"] and len(noises) == NUM_NOISES
        assert noises.kind.is_unique
        for path in noises.path:
            noise = read_audio(folder / "noises" / path)
            assert noise.size >= 4 * SAMPLE_RATE and power(noise) > 1e-5

        test = pd.read_csv(folder / "test" / "test.csv")
        assert list(test.columns) == ["mixture_id", "mixture", "clean", "noise_id", "snr_db", "text"]
        assert len(test) == NUM_TEST * NUM_NOISES and test.mixture_id.is_unique
        assert set(test.noise_id) == set(noises.noise_id) and set(test.snr_db) <= {-2.5, 0.0, 2.5}
        for row in test.itertuples():
            mixture = read_audio(folder / "test" / row.mixture)
            clean = read_audio(folder / "test" / row.clean)
            assert mixture.size == clean.size and np.max(np.abs(mixture)) <= 0.951
            snr_db = 10 * np.log10(power(clean) / power(mixture - clean))
            assert abs(snr_db - row.snr_db) < 0.01, (speaker, row.mixture_id, snr_db)

        record = json.loads((folder / "voice.json").read_text())
        VoiceParams.from_dict(record["voice"])
        enrollment_texts, test_texts = set(record["enrollment"]["texts"]), set(record["test_texts"])
        assert len(test_texts) == NUM_TEST and enrollment_texts
        assert not enrollment_texts & test_texts and not (enrollment_texts | test_texts) & set(sentences)


def test_build_world_refuses_bad_input_before_work(pool_txt, tmp_path):
    out_dir = tmp_path / "spk"
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        build_world.main(world_args("spk", 1, tmp_path / "missing.txt", out_dir))
    few = tmp_path / "few.txt"
    few.write_text("One short sentence here.\nAnother short sentence here.\n")
    with pytest.raises(ValueError, match="few.txt"):
        build_world.main(world_args("spk", 1, few, out_dir))
    with pytest.raises(ValueError, match="unknown flite voice"):
        build_world.main(world_args("spk", 1, pool_txt, out_dir) + ["--base-voices", "nobody"])
    assert not out_dir.exists() and not list(tmp_path.glob(".spk.*"))


def test_build_background_layout(pool_txt, tmp_path):
    out_dir = tmp_path / "background"
    build_background.main(
        [
            "--seed",
            "7",
            "--num-speakers",
            "3",
            "--utterances-per-speaker",
            "2",
            "--num-noises",
            "3",
            "--noise-seconds",
            "4",
            "--sentences",
            str(pool_txt),
            "--out-dir",
            str(out_dir),
        ]
    )
    speech = pd.read_csv(out_dir / "speech" / "manifest.csv")
    assert list(speech.columns) == ["utt_id", "path", "text", "duration_s", "speaker"]
    assert len(speech) == 6 and list(speech.speaker[:3]) == ["bg00", "bg01", "bg02"]  # interleaved
    for path in speech.path:
        assert read_audio(out_dir / "speech" / path).size > SAMPLE_RATE
    noises = pd.read_csv(out_dir / "noises" / "noises.csv")
    assert len(noises) == 3 and noises.kind.is_unique
    assert all(read_audio(out_dir / "noises" / p).size >= 4 * SAMPLE_RATE for p in noises.path)


# ---- world_clone ------------------------------------------------------------------------------


def test_clone_sees_only_audio_and_ranks_between_truth_and_others(worlds, encoder, monkeypatch):
    """Similarity to the enrollment: the speaker's own speech > the clone > another speaker."""
    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):
        assert pathlib.Path(str(file)).name != "voice.json", "the clone must not read voice.json"
        return real_open(file, *args, **kwargs)

    backend = get_backend("world_clone", num_warps=6)
    gt = {
        s: [read_audio(worlds / s / "gt" / p) for p in pd.read_csv(worlds / s / "gt" / "manifest.csv").path]
        for s in SEEDS
    }
    gt_embeddings = {s: encoder.embed(audios) for s, audios in gt.items()}
    for speaker in ["spkA", "spkC"]:
        enrollment = read_audio(worlds / speaker / "enrollment.wav")
        with monkeypatch.context() as patch:
            patch.setattr(builtins, "open", guarded_open)
            conditioning = backend.compute_conditioning(enrollment, SAMPLE_RATE)
        assert VoiceParams.from_dict(conditioning["voice_params"])
        texts = pd.read_csv(worlds / speaker / "gt" / "manifest.csv").text
        clone = [backend.synthesize(text, conditioning, seed=i) for i, text in enumerate(texts)]
        assert np.array_equal(clone[0], backend.synthesize(texts[0], conditioning, seed=0))
        target = encoder.embed([enrollment])[0]
        own = float(np.mean(gt_embeddings[speaker] @ target))
        cloned = float(np.mean(encoder.embed(clone) @ target))
        other = max(float(np.mean(gt_embeddings[s] @ target)) for s in SEEDS if s != speaker)
        assert own > cloned > other, (speaker, own, cloned, other)
