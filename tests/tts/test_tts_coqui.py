"""YourTTS and XTTS-v2 backends on tiny random checkpoints of the real coqui architectures.

The checkpoints (workflow_scripts/testing/tiny_models.py) are written in the hub models' folder
layout and loaded through the backends' normal loading code (`model` = that
folder), with no network access.
"""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from workflow_scripts import clone_voice, synthesize
from workflow_scripts.files.audio import SAMPLE_RATE, write_audio
from workflow_scripts.testing.tiny_models import build_xtts, build_yourtts
from workflow_scripts.tts import coqui, get_backend
from workflow_scripts.tts.text import split_text
from workflow_scripts.world.voices import render_flite

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SENTENCE = "The sun is shining today."
# 330 characters: more than XTTS's 250 for English and YourTTS's 200 in one pass
LONG_SENTENCE = ("When the sunlight strikes raindrops in the air, they act as a prism and form a rainbow, "
                 "which takes the shape of a long round arch, with its path high above, and its two ends "
                 "apparently beyond the horizon, and there is, according to legend, a boiling pot of gold "
                 "at one end that people look for but no one ever finds it at all")


@pytest.fixture(scope="module")
def enrollment():
    return render_flite("My name is Paul and I live in a small town. "
                        "Every morning I walk to work and drink some tea.", "kal16")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("coqui")
    return {"yourtts": build_yourtts(root / "your_tts"), "xtts": build_xtts(root / "xtts_v2"), "root": root}


@pytest.fixture(scope="module")
def yourtts(folders):
    return get_backend("yourtts", model=str(folders["yourtts"]))


@pytest.fixture(scope="module")
def xtts(folders):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COQUI_TOS_AGREED", "1")
        return get_backend("xtts", model=str(folders["xtts"]))


def count_calls(module: torch.nn.Module) -> list:
    """A list that grows by one at each forward call of `module`."""
    calls = []
    module.register_forward_hook(lambda *args: calls.append(1))
    return calls


def spy_pieces(monkeypatch, obj, method: str, text_arg: int) -> list:
    """Record the text given to obj.method at each call (positional argument `text_arg`)."""
    pieces = []
    original = getattr(obj, method)

    def spy(*args, **kwargs):
        pieces.append(args[text_arg])
        return original(*args, **kwargs)

    monkeypatch.setattr(obj, method, spy)
    return pieces


def test_yourtts_conditioning_once_then_synthesis(yourtts, enrollment):
    encoder_calls = count_calls(yourtts.model.speaker_manager.encoder.conv1)  # its first layer
    conditioning = yourtts.compute_conditioning(enrollment, SAMPLE_RATE)
    assert encoder_calls, "the d-vector comes from the model's speaker encoder"
    assert set(conditioning) == {"d_vector"}
    assert conditioning["d_vector"].shape == (16,)
    assert torch.all(torch.isfinite(conditioning["d_vector"]))
    encoder_calls.clear()
    audio = yourtts.synthesize(SENTENCE, conditioning, seed=1)
    assert not encoder_calls, "synthesis must reuse the stored d-vector"
    assert yourtts.sample_rate == 16000
    assert audio.dtype == np.float32 and audio.ndim == 1 and audio.size > 0.2 * yourtts.sample_rate
    assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) > 0


def test_yourtts_seed_reproduces(yourtts, enrollment):
    conditioning = yourtts.compute_conditioning(enrollment, SAMPLE_RATE)
    first, again = (yourtts.synthesize(SENTENCE, conditioning, seed=5) for _ in range(2))
    other = yourtts.synthesize(SENTENCE, conditioning, seed=6)
    assert np.array_equal(first, again)
    assert first.shape != other.shape or not np.array_equal(first, other)


def test_yourtts_splits_long_text(yourtts, enrollment, monkeypatch):
    conditioning = yourtts.compute_conditioning(enrollment, SAMPLE_RATE)
    pieces = spy_pieces(monkeypatch, yourtts.model.tokenizer, "text_to_ids", 0)
    audio = yourtts.synthesize(LONG_SENTENCE, conditioning, seed=0)
    assert pieces == split_text(LONG_SENTENCE, coqui.YOURTTS_MAX_CHARS) and len(pieces) == 2
    assert " ".join(pieces) == LONG_SENTENCE  # nothing dropped
    assert np.all(np.isfinite(audio)) and audio.size > len(pieces) * coqui.PIECE_PAUSE_S * 16000


def test_yourtts_finds_speaker_encoder_by_file_name(tmp_path, enrollment):
    folder = build_yourtts(tmp_path / "your_tts", encoder_in_config=False)
    backend = get_backend("yourtts", model=str(folder))
    assert backend.model.speaker_manager.encoder is not None
    conditioning = backend.compute_conditioning(enrollment, SAMPLE_RATE)
    assert conditioning["d_vector"].shape == (16,)


def test_xtts_conditioning_once_then_synthesis(xtts, enrollment):
    model = xtts.model
    speaker_encoder_calls = count_calls(model.hifigan_decoder.speaker_encoder.conv1)  # its first layer
    style_encoder_calls = count_calls(model.gpt.conditioning_encoder)
    conditioning = xtts.compute_conditioning(enrollment, SAMPLE_RATE)
    assert speaker_encoder_calls and style_encoder_calls
    assert conditioning["gpt_cond_latent"].shape == (1, 32, 32)  # 32 perceiver latents x model dim
    assert conditioning["speaker_embedding"].shape == (1, 512, 1)
    speaker_encoder_calls.clear()
    style_encoder_calls.clear()
    audio = xtts.synthesize(SENTENCE, conditioning, seed=1)
    assert not speaker_encoder_calls and not style_encoder_calls, "synthesis must reuse the conditioning"
    assert xtts.sample_rate == 24000
    assert audio.dtype == np.float32 and audio.ndim == 1 and audio.size > 0
    assert np.all(np.isfinite(audio))


def test_xtts_seed_reproduces(xtts, enrollment):
    conditioning = xtts.compute_conditioning(enrollment, SAMPLE_RATE)
    first, again = (xtts.synthesize(SENTENCE, conditioning, seed=5) for _ in range(2))
    other = xtts.synthesize(SENTENCE, conditioning, seed=6)
    assert np.array_equal(first, again)
    assert first.shape != other.shape or not np.array_equal(first, other)


def test_xtts_splits_long_text(xtts, enrollment, monkeypatch):
    conditioning = xtts.compute_conditioning(enrollment, SAMPLE_RATE)
    pieces = spy_pieces(monkeypatch, xtts.model, "inference", 0)
    audio = xtts.synthesize(LONG_SENTENCE, conditioning, seed=0)
    assert xtts.max_chars == 250  # XTTS's tokenizer limit for English
    assert pieces == split_text(LONG_SENTENCE, 250) and len(pieces) == 2
    assert " ".join(pieces) == LONG_SENTENCE
    assert np.all(np.isfinite(audio)) and audio.size > coqui.PIECE_PAUSE_S * 24000


def test_unknown_options_are_named(folders, monkeypatch):
    with pytest.raises(TypeError, match=r"yourtts backend: unknown options \['temprature'\]"):
        get_backend("yourtts", model=str(folders["yourtts"]), temprature=0.5)
    monkeypatch.setenv("COQUI_TOS_AGREED", "1")
    with pytest.raises(TypeError, match=r"xtts backend: unknown options \['noise_scale'\]"):
        get_backend("xtts", model=str(folders["xtts"]), noise_scale=0.5)


def test_bad_model_names_fail_clearly(folders, tmp_path):
    with pytest.raises(ValueError, match="neither an existing folder nor a coqui model name"):
        get_backend("yourtts", model=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="not a model of coqui's model list"):
        get_backend("yourtts", model="tts_models/en/nowhere/no_such_model", model_dir=str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty: no config.json"):
        get_backend("yourtts", model=str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="is a 'xtts' model, not 'vits'"):
        get_backend("yourtts", model=str(folders["xtts"]))
    with pytest.raises(ValueError, match="language 'xx'"):
        get_backend("yourtts", model=str(folders["yourtts"]), language="xx")


def test_xtts_license_guard_refuses_before_loading(monkeypatch):
    monkeypatch.delenv("COQUI_TOS_AGREED", raising=False)

    def must_not_load(*args, **kwargs):
        raise AssertionError("a model was looked up before the license was checked")

    monkeypatch.setattr(coqui, "find_model_files", must_not_load)
    monkeypatch.setattr(coqui, "load_model", must_not_load)
    cpml = r"Coqui Public Model License \(CPML\).*accept_coqui_license: true"
    with pytest.raises(PermissionError, match=cpml):
        get_backend("xtts")  # the hub model: refused before the cache or network is looked at
    monkeypatch.setenv("COQUI_TOS_AGREED", "0")
    with pytest.raises(PermissionError, match="CPML"):
        get_backend("xtts")


def run_step(args: list[str], env: dict, log_path, timeout_s: float = 120) -> int:
    """Run a step module in a subprocess whose stdin stays open and empty: a prompt would hang it."""
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, env=env, stdin=subprocess.PIPE,
                                   stdout=log, stderr=subprocess.STDOUT)
        try:
            return process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError(f"{args[0]} did not finish in {timeout_s} s (waiting on stdin?)")
        finally:
            process.stdin.close()


def step_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "COQUI_TOS_AGREED"}
    env.update(HF_HUB_OFFLINE="1", PYTHONPATH=REPO, **extra)
    return env


def test_xtts_step_without_license_stops_at_once(tmp_path):
    enrollment_wav = tmp_path / "enrollment.wav"
    write_audio(enrollment_wav, render_flite("My name is Paul and I live in a small town.", "kal16"))
    out = tmp_path / "voices" / "xtts" / "spk.pt"
    log_path = tmp_path / "clone.log"
    rc = run_step(["workflow_scripts.clone_voice", "--backend", "xtts", "--options-json", "{}",
                   "--enrollment", str(enrollment_wav), "--device", "cpu",
                   "--model-dir", str(tmp_path / "models"),
                   "--out", str(out)], step_env(), log_path, timeout_s=60)
    assert rc != 0
    assert "Coqui Public Model License (CPML)" in log_path.read_text()
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))


def test_xtts_clone_and_synthesize_steps_end_to_end(folders, tmp_path):
    enrollment_wav = tmp_path / "enrollment.wav"
    write_audio(enrollment_wav, render_flite("My name is Paul and I live in a small town. "
                                             "Every morning I walk to work.", "kal16"))
    sentences_txt = tmp_path / "sentences.txt"
    sentences_txt.write_text(f"{SENTENCE}\n{LONG_SENTENCE}\n")
    options = f'{{"model": "{folders["xtts"]}"}}'
    voice_pt = tmp_path / "voices" / "xtts" / "spk.pt"
    speech_dir = tmp_path / "speech" / "xtts" / "spk"
    env = step_env(COQUI_TOS_AGREED="1")
    common = ["--backend", "xtts", "--options-json", options, "--device", "cpu",
              "--model-dir", str(tmp_path / "models")]
    rc = run_step(["workflow_scripts.clone_voice", *common, "--enrollment", str(enrollment_wav),
                   "--out", str(voice_pt)], env, tmp_path / "clone.log")
    assert rc == 0, (tmp_path / "clone.log").read_text()[-3000:]
    record = torch.load(voice_pt, weights_only=False)
    assert record["backend"] == "xtts" and record["options"] == {"model": str(folders["xtts"])}
    assert set(record["conditioning"]) == {"gpt_cond_latent", "speaker_embedding"}
    rc = run_step(["workflow_scripts.synthesize", *common, "--voice", str(voice_pt),
                   "--sentences", str(sentences_txt), "--num-utterances", "2", "--speaker", "spk",
                   "--tts", "xtts", "--seed", "0", "--batch-size", "2", "--out-dir", str(speech_dir)],
                  env, tmp_path / "synth.log")
    assert rc == 0, (tmp_path / "synth.log").read_text()[-3000:]
    manifest = pd.read_csv(speech_dir / "manifest.csv")
    assert len(manifest) == 2 and pd.read_csv(speech_dir / "failures.csv").empty
    for row in manifest.itertuples():
        audio, sample_rate = sf.read(speech_dir / row.path, dtype="float32")
        assert sample_rate == SAMPLE_RATE and audio.ndim == 1 and np.all(np.isfinite(audio))
        assert np.max(np.abs(audio)) == pytest.approx(0.9, abs=1e-4)


def test_yourtts_steps_in_process(folders, tmp_path, monkeypatch):
    for key in ("TTS_HOME", "HF_HOME", "TORCH_HOME"):  # configure() sets them for the process
        monkeypatch.setenv(key, os.environ.get(key, ""))
    enrollment_wav = tmp_path / "enrollment.wav"
    write_audio(enrollment_wav, render_flite("My name is Paul and I live in a small town.", "kal16"))
    sentences_txt = tmp_path / "sentences.txt"
    sentences_txt.write_text(f"{SENTENCE}\n{LONG_SENTENCE}\n")
    options = f'{{"model": "{folders["yourtts"]}", "length_scale": 1.2}}'
    voice_pt, speech_dir = tmp_path / "spk.pt", tmp_path / "speech"
    common = ["--backend", "yourtts", "--options-json", options, "--device", "cpu",
              "--model-dir", str(tmp_path / "models")]
    clone_voice.main([*common, "--enrollment", str(enrollment_wav), "--out", str(voice_pt)])
    args = [*common, "--voice", str(voice_pt), "--sentences", str(sentences_txt), "--num-utterances", "2",
            "--speaker", "spk", "--tts", "yourtts", "--seed", "3"]
    synthesize.main([*args, "--out-dir", str(speech_dir)])
    synthesize.main([*args, "--out-dir", str(tmp_path / "rerun")])
    first, second = (pd.read_csv(d / "manifest.csv") for d in (speech_dir, tmp_path / "rerun"))
    pd.testing.assert_frame_equal(first, second)
    for path in first.path:
        assert np.array_equal(sf.read(speech_dir / path)[0], sf.read(tmp_path / "rerun" / path)[0])
