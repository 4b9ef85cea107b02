"""Chatterbox backend on a tiny random checkpoint of the real architecture (T3 + S3Gen).

The checkpoint (workflow_scripts/testing/tiny_chatterbox.py) is saved as the hub's
ResembleAI/chatterbox folder is and loaded as chatterbox-tts's from_local loads it, from a
local folder, with the network off. chatterbox-tts pins torch 2.6 and numpy < 2: here its
code runs on the project's versions (installed with --no-deps, see the Makefile).
"""

import numpy as np
import pytest
import torch

pytest.importorskip("chatterbox", reason="chatterbox-tts is installed with `pip install --no-deps "
                                         "chatterbox-tts==0.1.7` (Makefile; it pins torch 2.6 and numpy < 2)")

from workflow_scripts import clone_voice, synthesize  # noqa: E402
from workflow_scripts.files.audio import SAMPLE_RATE, read_audio, write_audio  # noqa: E402
from workflow_scripts.testing.tiny_chatterbox import RELEASED_S3GEN_SIZES, build_chatterbox  # noqa: E402
from workflow_scripts.tts import get_backend  # noqa: E402
from workflow_scripts.tts.chatterbox import build_s3gen, build_t3  # noqa: E402
from workflow_scripts.world.voices import render_flite  # noqa: E402

# the tiny T3 never samples its stop token: every piece runs to max_new_tokens
TINY_OPTIONS = {"max_new_tokens": 30}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub

    def no_fetch(*args, **kwargs):
        raise AssertionError(f"network fetch attempted: {args} {kwargs}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_fetch)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return build_chatterbox(tmp_path_factory.mktemp("chatterbox") / "chatterbox")


@pytest.fixture(scope="module")
def backend(model):
    return get_backend("chatterbox", model=model, **TINY_OPTIONS)


@pytest.fixture(scope="module")
def enrollment():
    return render_flite("My name is Paul and I live in a small town.", "kal16")


@pytest.fixture(scope="module")
def conditioning(backend, enrollment):
    return backend.compute_conditioning(enrollment, SAMPLE_RATE)


def shapes(module: torch.nn.Module) -> dict:
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


def test_sized_builders_make_the_released_modules_at_released_sizes():
    """build_s3gen and build_t3 at the released sizes hold the weights of chatterbox-tts's S3Gen() and T3()."""
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.t3 import T3
    from chatterbox.models.t3.llama_configs import LLAMA_CONFIGS

    llama = LLAMA_CONFIGS["Llama_520M"]
    released_t3 = {key: llama[key] for key in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                               "num_attention_heads", "head_dim")}
    with torch.device("meta"):
        assert shapes(build_s3gen(RELEASED_S3GEN_SIZES)) == shapes(S3Gen())
        assert shapes(build_t3(dict(released_t3, perceiver_heads=4))) == shapes(T3())


def test_conditioning_is_both_conditionals_as_cpu_tensors(conditioning):
    assert set(conditioning) == {"t3", "gen"}
    t3, gen = conditioning["t3"], conditioning["gen"]
    assert t3["speaker_emb"].shape == (1, 256) and t3["cond_prompt_speech_tokens"].ndim == 2
    assert float(t3["emotion_adv"].reshape(-1)[0]) == pytest.approx(0.5)
    assert gen["prompt_feat"].shape[-1] == 80 and gen["embedding"].shape == (1, 192)
    assert all(value.device.type == "cpu" for part in (t3, gen) for value in part.values() if torch.is_tensor(value))


def test_synthesis_is_24k_finite_watermarked_and_reproducible(backend, conditioning, monkeypatch):
    watermarked = []
    apply = backend.tts.watermarker.apply_watermark
    monkeypatch.setattr(backend.tts.watermarker, "apply_watermark",
                        lambda wav, sample_rate: watermarked.append(sample_rate) or apply(wav, sample_rate=sample_rate))
    audio = backend.synthesize("Hello world.", conditioning, seed=3)
    assert backend.sample_rate == 24000 and watermarked == [24000]  # every piece goes through PerTh
    assert audio.dtype == np.float32 and audio.ndim == 1 and audio.size > 0 and np.all(np.isfinite(audio))
    assert np.array_equal(backend.synthesize("Hello world.", conditioning, seed=3), audio)
    assert not np.array_equal(backend.synthesize("Hello world.", conditioning, seed=4), audio)


def test_long_text_is_split_into_pieces_never_truncated(model, conditioning, monkeypatch):
    backend = get_backend("chatterbox", model=model, max_chars=30, **TINY_OPTIONS)
    pieces = []
    generate = backend.generate
    monkeypatch.setattr(backend, "generate", lambda text, conds: pieces.append((text, generate(text, conds)))
                        or pieces[-1][1])
    text = "The sun is shining today. We went to the park. Please open the door."
    audio = backend.synthesize(text, conditioning, seed=0)
    assert [piece for piece, _ in pieces] == ["The sun is shining today.", "We went to the park.",
                                              "Please open the door."]
    assert audio.size == sum(wav.size for _, wav in pieces) + 2 * round(0.25 * backend.sample_rate)


def test_options_and_folders_are_checked(model, tmp_path):
    with pytest.raises(TypeError, match="unknown options.*exaggeration"):
        get_backend("chatterbox", model=model, exageration=0.7)
    with pytest.raises(FileNotFoundError, match="no ve.safetensors"):
        get_backend("chatterbox", model=str(tmp_path)).tts  # noqa: B018 - the model loads when first used
    with pytest.raises(ValueError, match="neither an existing folder nor a released model"):
        get_backend("chatterbox", model="someone/else").tts  # noqa: B018


def test_clone_voice_and_synthesize_steps(model, enrollment, tmp_path):
    enrollment_wav = tmp_path / "enrollment.wav"
    write_audio(enrollment_wav, enrollment)
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("The sun is shining today.\nWe went to the park.\n")
    options = f'{{"model": "{model}", "max_new_tokens": 30}}'
    voice = tmp_path / "voice.pt"
    clone_voice.main(["--backend", "chatterbox", "--options-json", options, "--enrollment", str(enrollment_wav),
                      "--out", str(voice), "--device", "cpu"])
    assert torch.load(voice, weights_only=False)["backend"] == "chatterbox"
    speech = tmp_path / "speech"
    synthesize.main(["--backend", "chatterbox", "--options-json", options, "--voice", str(voice), "--sentences",
                     str(sentences), "--num-utterances", "2", "--speaker", "spk", "--tts", "chatterbox",
                     "--seed", "0", "--device", "cpu", "--out-dir", str(speech)])
    wavs = sorted(speech.glob("wavs/*.wav"))
    assert len(wavs) == 2 and all(read_audio(wav).size > 0 for wav in wavs)
