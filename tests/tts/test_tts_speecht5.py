"""SpeechT5 backend and the x-vector encoder, on tiny random checkpoints of the real architectures.

The checkpoints (workflow_scripts/testing/tiny_models.py) are saved as the hub ones are and loaded
through the same from_pretrained / from_hparams calls, from local folders,
with the network off.
"""

import itertools
import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

from workflow_scripts import clone_voice, synthesize
from workflow_scripts.scoring import xvector
from workflow_scripts.testing.tiny_models import build_speecht5_hifigan, build_speecht5_tts, build_tiny_xvector
from workflow_scripts.files.audio import SAMPLE_RATE, read_audio, write_audio
from workflow_scripts.tts import get_backend
from workflow_scripts.tts.speecht5 import SpeechT5Backend, piece_seed
from workflow_scripts.world.voices import render_flite

TEXTS = ["Hello world.", "A somewhat longer sentence to read here.", "Hi there!"]
# threshold above the summed stop probabilities of a step (reduction factor 2): decode to maxlenratio,
# so that every utterance has a known, text-dependent length
RUN_TO_MAX = {"threshold": 3.0, "maxlenratio": 3.0}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("speecht5")
    return {
        "model": build_speecht5_tts(root / "speecht5_tts"),
        "vocoder": build_speecht5_hifigan(root / "speecht5_hifigan"),
        "speaker_encoder": build_tiny_xvector(root / "spkrec-xvect"),
        "root": root,
    }


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test here may reach the network: the hub clients are told so, and fail if they try."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    import huggingface_hub

    hf_hub_download = huggingface_hub.hf_hub_download

    def cache_only(*args, **kwargs):
        if not kwargs.get("local_files_only"):
            raise AssertionError(f"network fetch attempted: {args} {kwargs}")
        return hf_hub_download(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", cache_only)  # speechbrain calls it here


@pytest.fixture(scope="module")
def speech():
    return [render_flite("My name is Paul and I live in a small town.", "kal16"),
            render_flite("Every morning I walk to work.", "slt"),
            render_flite("Hi there, how are you?", "awb")]


@pytest.fixture(scope="module")
def backend(models):
    return get_backend("speecht5", device="cpu", model=models["model"], vocoder=models["vocoder"],
                       speaker_encoder=models["speaker_encoder"], model_dir=str(models["root"] / "cache"),
                       **RUN_TO_MAX)


@pytest.fixture(scope="module")
def conditioning(backend, speech):
    return backend.compute_conditioning(speech[0], SAMPLE_RATE)


# x-vector encoder


def test_xvector_local_folder_loads_in_place(models, speech, tmp_path):
    folder = models["speaker_encoder"]
    before = sorted(os.listdir(folder))
    encoder = xvector.XVectorEncoder(folder, model_dir=tmp_path / "models")
    embeddings = encoder.embed(speech)
    assert embeddings.shape == (3, 512) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert sorted(os.listdir(folder)) == before  # nothing linked or copied into the model folder
    assert not (tmp_path / "models").exists()  # and no savedir made for it


def test_xvector_batch_matches_one_at_a_time(models, speech):
    encoder = xvector.XVectorEncoder(models["speaker_encoder"], batch_size=8)
    batched = encoder.embed(speech)
    alone = np.stack([encoder.embed([clip])[0] for clip in speech])
    # padding is left out of the pooling by the relative lengths: 1 - cosine is about 5e-5 for the
    # shortest clip (without the lengths 3.5e-3, more than between these three voices in this model)
    np.testing.assert_array_less(1 - np.sum(batched * alone, axis=1), 2e-4)
    # each clip is peak-normalised first: the level does not matter
    np.testing.assert_allclose(encoder.embed([0.1 * speech[1]])[0], alone[1], atol=1e-4)


def test_xvector_hub_model_is_copied_into_its_savedir_and_read_from_there(models, speech, tmp_path):
    """A hub id found in the Hugging Face cache under the model folder (as download_models leaves it)
    is copied into its speechbrain savedir; later loads need only the savedir."""
    import shutil

    from workflow_scripts.runtime import model_cache

    source = "speechbrain/spkrec-xvect-voxceleb"
    hub_cache = model_cache.cache_dirs(tmp_path)["huggingface"] / "hub"
    repo = hub_cache / "models--speechbrain--spkrec-xvect-voxceleb"
    revision = "0" * 40
    shutil.copytree(models["speaker_encoder"], repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    expected = xvector.XVectorEncoder(models["speaker_encoder"]).embed(speech[:1])
    np.testing.assert_allclose(xvector.XVectorEncoder(source, model_dir=tmp_path).embed(speech[:1]), expected)
    savedir = model_cache.speechbrain_savedir(tmp_path, source)
    assert not any(path.is_symlink() for path in savedir.iterdir())
    shutil.rmtree(hub_cache)
    np.testing.assert_allclose(xvector.XVectorEncoder(source, model_dir=tmp_path).embed(speech[:1]), expected)


def test_xvector_missing_hub_model_fails_naming_it(tmp_path):
    with pytest.raises(RuntimeError, match="speechbrain/spkrec-xvect-voxceleb.*download_models"):
        xvector.XVectorEncoder("speechbrain/spkrec-xvect-voxceleb", model_dir=tmp_path)


# SpeechT5 backend


def test_conditioning_is_the_enrollment_xvector(backend, conditioning, speech, models):
    assert conditioning["xvector"].shape == (512,)
    assert abs(float(np.linalg.norm(conditioning["xvector"])) - 1.0) < 1e-5
    expected = xvector.XVectorEncoder(models["speaker_encoder"]).embed([speech[0]])[0]
    np.testing.assert_allclose(conditioning["xvector"], expected, atol=1e-6)
    # a 24 kHz clip is resampled to 16 kHz first
    from workflow_scripts.files.audio import resample

    at_24k = backend.compute_conditioning(resample(speech[0], SAMPLE_RATE, 24000), 24000)["xvector"]
    assert float(np.dot(at_24k, conditioning["xvector"])) > 0.99


def test_synthesis_shapes_and_lengths(backend, conditioning):
    outputs = backend.synthesize_batch(TEXTS, conditioning, [1, 2, 3])
    assert backend.sample_rate == SAMPLE_RATE
    for text, audio in zip(TEXTS, outputs):
        tokens = len(backend._token_ids(text))
        steps = int(tokens * RUN_TO_MAX["maxlenratio"] / 2)
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert audio.size == steps * 2 * 256  # reduction factor 2, hop 256
        assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) > 1e-3


def test_batch_equals_one_at_a_time(backend, conditioning):
    batched = backend.synthesize_batch(TEXTS, conditioning, [11, 12, 13])
    for text, seed, audio in zip(TEXTS, [11, 12, 13], batched):
        alone = backend.synthesize(text, conditioning, seed)
        assert alone.shape == audio.shape
        np.testing.assert_allclose(audio, alone, atol=1e-5 * np.max(np.abs(alone)))


def test_seed_sets_the_prenet_dropout(backend, conditioning):
    first = backend.synthesize(TEXTS[0], conditioning, 5)
    np.testing.assert_array_equal(first, backend.synthesize(TEXTS[0], conditioning, 5))
    assert not np.array_equal(first, backend.synthesize(TEXTS[0], conditioning, 6))
    # an utterance's audio does not depend on its neighbours' seeds
    a = backend.synthesize_batch(TEXTS, conditioning, [5, 1, 2])[0]
    b = backend.synthesize_batch(TEXTS, conditioning, [5, 3, 4])[0]
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_decoding_matches_transformers_generate_speech(backend, conditioning, monkeypatch):
    """With the same dropout masks, the batched decoder gives generate_speech's audio."""
    from transformers.models.speecht5 import modeling_speecht5

    config = backend.model.config
    table = torch.rand(400, config.speech_decoder_prenet_layers, config.speech_decoder_prenet_units,
                       generator=torch.Generator().manual_seed(0)) < config.speech_decoder_prenet_dropout
    calls = itertools.count()

    def table_dropout(self, inputs_embeds, p):  # the mask of position t is table[t], in every pass
        keep = table[: inputs_embeds.size(1), next(calls) % config.speech_decoder_prenet_layers]
        return torch.where(keep.unsqueeze(0), inputs_embeds, 0) * 1 / (1 - p)

    monkeypatch.setattr(modeling_speecht5.SpeechT5SpeechDecoderPrenet, "_consistent_dropout", table_dropout)
    monkeypatch.setattr(backend, "_dropout_keep_masks",
                        lambda seeds, steps: table[: max(steps)].unsqueeze(0).expand(len(seeds), -1, -1, -1))
    text = TEXTS[1]
    inputs = backend.processor(text=text, return_tensors="pt")
    speaker = torch.from_numpy(conditioning["xvector"]).unsqueeze(0)
    with torch.inference_mode():
        expected = backend.model.generate_speech(inputs["input_ids"], speaker, threshold=3.0,
                                                 maxlenratio=RUN_TO_MAX["maxlenratio"],
                                                 vocoder=backend.vocoder).numpy()
    ours = backend.synthesize_batch([TEXTS[0], text], conditioning, [0, 0])[1]
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, atol=1e-5 * np.max(np.abs(expected)))


def test_padded_vocoding_equals_vocoding_each_alone(backend, monkeypatch):
    """The vocoder runs on zero-padded rows; each row's end is redone alone: the audio is exact."""
    from workflow_scripts.tts import speecht5

    torch.manual_seed(0)
    num_frames = [8, 30, 31, 64, 120]  # shorter and longer than 2 x the receptive radius (9 frames here)
    spectrogram = torch.randn(len(num_frames), max(num_frames), 80)
    monkeypatch.setattr(speecht5, "VOCODER_BATCH_FRAMES", 200)  # several padded groups
    waves = backend._vocode(spectrogram, num_frames)
    postnet = backend.model.speech_decoder_postnet.postnet
    with torch.inference_mode():
        for row, n in enumerate(num_frames):
            alone = backend.vocoder(postnet(spectrogram[row:row + 1, :n]))[0].numpy()
            assert waves[row].shape == alone.shape == (n * 256,)
            np.testing.assert_allclose(waves[row], alone, atol=1e-5 * np.max(np.abs(alone)))


def test_stop_token_ends_each_utterance(models, conditioning):
    """Untrained, the stop head says about 0.5 per frame (sum about 1): a threshold of 0.5 stops at once,
    after minlenratio."""
    eager = SpeechT5Backend(model=models["model"], vocoder=models["vocoder"],
                            speaker_encoder=models["speaker_encoder"], threshold=0.5, minlenratio=1.0)
    for text, audio in zip(TEXTS, eager.synthesize_batch(TEXTS, conditioning, [0, 0, 0])):
        steps = max(int(len(eager._token_ids(text)) * 1.0 / 2), 1)
        assert audio.size == steps * 2 * 256


def test_long_text_is_split_at_sentences_not_truncated(backend, conditioning):
    limit = backend.model.config.max_text_positions  # 64 tokens in the tiny model
    sentences = ["The first sentence is here.", "Then comes a second one, somewhat longer.",
                 "And a third sentence ends it.", "A fourth one follows."]
    text = " ".join(sentences)
    assert len(backend._token_ids(text)) > limit
    pieces = backend.split(text)
    assert len(pieces) > 1 and " ".join(pieces) == text
    assert all(len(backend._token_ids(piece)) <= limit for piece in pieces)
    assert all(piece.endswith((".", "!", "?")) for piece in pieces)  # cut between sentences
    audio = backend.synthesize(text, conditioning, 9)
    speaker = backend._speaker_embedding(conditioning)
    parts = [backend.decode([backend._token_ids(piece)], speaker, [piece_seed(9, i)])[0]
             for i, piece in enumerate(pieces)]
    assert audio.size == sum(part.size for part in parts)
    np.testing.assert_allclose(audio, np.concatenate(parts), atol=1e-5 * np.max(np.abs(audio)))


def test_bad_conditioning_and_options(backend, models):
    with pytest.raises(ValueError, match="no 'xvector'"):
        backend.synthesize("Hello.", {"voice": "kal16"}, 0)
    with pytest.raises(ValueError, match="512"):
        backend.synthesize("Hello.", {"xvector": np.ones(192, np.float32)}, 0)
    with pytest.raises(ValueError, match="empty text"):
        backend.synthesize("   ", {"xvector": np.ones(512, np.float32)}, 0)
    with pytest.raises(ValueError, match="maxlenratio"):
        SpeechT5Backend(minlenratio=2.0, maxlenratio=1.0)


def test_missing_hub_model_fails_naming_it(tmp_path, conditioning):
    backend = SpeechT5Backend(model="microsoft/speecht5_tts", model_dir=str(tmp_path))
    with pytest.raises(RuntimeError, match="microsoft/speecht5_tts.*download_models"):
        backend.synthesize("Hello.", conditioning, 0)


def test_clone_then_synthesize_steps(models, tmp_path, monkeypatch):
    """The workflow's two steps, end to end: the conditioning is computed once, by clone_voice."""
    enrollment_wav = tmp_path / "enrollment.wav"
    write_audio(enrollment_wav, render_flite("My name is Paul and I live in a small town.", "kal16"))
    sentences_txt = tmp_path / "sentences.txt"
    sentences_txt.write_text("\n".join(TEXTS + ["One more sentence."]) + "\n")
    options = json.dumps({"model": models["model"], "vocoder": models["vocoder"],
                          "speaker_encoder": models["speaker_encoder"], **RUN_TO_MAX})
    voice_pt = tmp_path / "voices" / "speecht5" / "spk.pt"
    model_dir = tmp_path / "models"
    assert clone_voice.main(["--backend", "speecht5", "--options-json", options, "--enrollment",
                             str(enrollment_wav), "--out", str(voice_pt), "--device", "cpu",
                             "--model-dir", str(model_dir)]) == 0
    record = torch.load(voice_pt, weights_only=False)
    assert record["backend"] == "speecht5" and record["conditioning"]["xvector"].shape == (512,)

    def no_encoder(*args, **kwargs):
        raise AssertionError("the speaker encoder must not run during synthesis")

    monkeypatch.setattr(xvector.XVectorEncoder, "__init__", no_encoder)
    out_dir = tmp_path / "speech" / "speecht5" / "spk"
    assert synthesize.main(["--backend", "speecht5", "--options-json", options, "--voice", str(voice_pt),
                            "--sentences", str(sentences_txt), "--num-utterances", "4", "--speaker", "spk",
                            "--tts", "speecht5", "--seed", "3", "--batch-size", "3", "--device", "cpu",
                            "--model-dir", str(model_dir), "--out-dir", str(out_dir)]) == 0
    manifest = pd.read_csv(out_dir / "manifest.csv")
    assert len(manifest) == 4 and manifest.text.tolist() == TEXTS + ["One more sentence."]
    assert pd.read_csv(out_dir / "failures.csv").empty
    for row in manifest.itertuples():
        audio = read_audio(out_dir / row.path)
        assert audio.size == round(row.duration_s * SAMPLE_RATE) and audio.size > 0.1 * SAMPLE_RATE
        assert abs(float(np.max(np.abs(audio))) - 0.9) < 1e-3  # peak-normalised
