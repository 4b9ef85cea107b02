"""Batched XTTS synthesis (the xtts backend's `batch_size` > 1) on a tiny random XTTS-v2.

The checkpoint (workflow_scripts/testing/tiny_models.py) is loaded from its folder as the hub model
would be. Its random GPT barely looks at its prefix (the mel code embeddings
dwarf the attention outputs) and never stops before its length limit, so that
every text would give the same codes; the tests rescale two of its random
weight tensors and raise the stop code's bias (`listening_gpt`), so that the
rows of a batch differ in text, codes and code count, which is what padding
and per-row stopping must get right.
"""

import numpy as np
import pytest
import torch

from workflow_scripts import synthesize
from workflow_scripts.files.audio import SAMPLE_RATE
from workflow_scripts.testing.tiny_models import build_xtts
from workflow_scripts.tts import coqui, get_backend
from workflow_scripts.tts.text import split_text
from workflow_scripts.world.voices import render_flite

SENTENCE = "The sun is shining today."
# 330 characters: two pieces for XTTS's 250 characters per pass in English
LONG_SENTENCE = ("When the sunlight strikes raindrops in the air, they act as a prism and form a rainbow, "
                 "which takes the shape of a long round arch, with its path high above, and its two ends "
                 "apparently beyond the horizon, and there is, according to legend, a boiling pot of gold "
                 "at one end that people look for but no one ever finds it at all")
TEXTS = ["Hi.", SENTENCE, LONG_SENTENCE, "Is it twenty past nine? Yes, it is."]  # 5 pieces
STOP_BIAS = 0.8  # the stop code's logit bias: the rows stop after different numbers of codes


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_xtts(tmp_path_factory.mktemp("coqui") / "xtts_v2")


def load(folder, **options):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COQUI_TOS_AGREED", "1")
        return get_backend("xtts", model=str(folder), **options)


def listening_gpt(backend):
    """Random GPT weights under which the codes depend on the text and the stop code comes early."""
    gpt = backend.model.gpt
    with torch.no_grad():
        gpt.mel_embedding.weight.mul_(0.05)
        for block in gpt.gpt.h:
            block.attn.c_proj.weight.mul_(20.0)
        gpt.mel_head.bias[gpt.stop_audio_token] = STOP_BIAS
    return backend


@pytest.fixture(scope="module")
def batched(folder):
    return listening_gpt(load(folder, batch_size=3))


@pytest.fixture(scope="module")
def conditioning(batched):
    enrollment = render_flite("My name is Paul and I live in a small town. "
                              "Every morning I walk to work and drink some tea.", "kal16")
    return batched.compute_conditioning(enrollment, SAMPLE_RATE)


def spy_rows(monkeypatch, backend) -> list[list[int]]:
    """The code count of each row, one list per batched generation."""
    groups = []
    original = backend.generate_codes

    def spy(*args, **kwargs):
        codes = original(*args, **kwargs)
        groups.append([len(row) for row in codes])
        return codes

    monkeypatch.setattr(backend, "generate_codes", spy)
    return groups


def assert_same_audio(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert a.dtype == np.float32 and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("speed", [1.0, 1.25])
def test_greedy_batch_matches_coqui_one_at_a_time(batched, conditioning, monkeypatch, speed):
    monkeypatch.setitem(batched.settings, "top_k", 1)  # every draw is the argmax: no randomness left
    monkeypatch.setattr(batched, "speed", speed)
    groups = spy_rows(monkeypatch, batched)
    seeds = [1, 2, 3, 4]
    together = batched.synthesize_batch(TEXTS, conditioning, seeds)
    assert len(split_text(LONG_SENTENCE, batched.max_chars)) == 2
    assert [len(group) for group in groups] == [3, 2]  # 5 pieces in rows of batch_size 3
    lengths = [n for group in groups for n in group]
    max_codes = batched.model.gpt.max_gen_mel_tokens
    assert len(set(lengths)) > 1 and min(lengths) < max_codes, "the rows must stop at different steps"
    alone = [batched.synthesize(text, conditioning, seed) for text, seed in zip(TEXTS, seeds)]  # coqui's path
    assert_same_audio(together, alone)
    assert all(audio.size > 0 and np.all(np.isfinite(audio)) for audio in together)


def test_sampled_utterance_depends_on_its_seed_not_its_batch(batched, conditioning, monkeypatch):
    groups = spy_rows(monkeypatch, batched)
    seeds = [5, 6, 7, 8]
    together = batched.synthesize_batch(TEXTS, conditioning, seeds)
    lengths = [n for group in groups for n in group]
    assert len(set(lengths)) > 1, "the rows must stop at different steps"
    alone = [batched.synthesize_batch([text], conditioning, [seed])[0] for text, seed in zip(TEXTS, seeds)]
    assert_same_audio(together, alone)
    other_neighbours = batched.synthesize_batch(["Something else entirely, said at length.", SENTENCE],
                                                conditioning, [99, 6])
    assert_same_audio(other_neighbours[1:], together[1:2])
    again = batched.synthesize_batch(TEXTS, conditioning, seeds)
    assert_same_audio(again, together)
    other_seed = batched.synthesize_batch([SENTENCE], conditioning, [16])[0]
    assert other_seed.shape != together[1].shape or not np.array_equal(other_seed, together[1])


def test_batch_size_one_renders_as_before(folder, conditioning, monkeypatch):
    backend = load(folder)
    assert backend.batch_size == 1
    monkeypatch.setattr(backend, "generate_codes", lambda *args: pytest.fail("batch_size 1 must not batch"))
    texts, seeds = [SENTENCE, LONG_SENTENCE], [3, 4]
    outputs = backend.synthesize_batch(texts, conditioning, seeds)
    # the rendering of the backend before batching existed: coqui's inference per piece after seeding
    sampling = {key: backend.settings[key] for key in backend.SAMPLING}
    latent, embedding = conditioning["gpt_cond_latent"], conditioning["speaker_embedding"]
    expected = []
    for text, seed in zip(texts, seeds):
        coqui.seed_everything(seed)
        pieces = [backend.model.inference(piece, "en", latent, embedding, speed=1.0,
                                          enable_text_splitting=False, **sampling)["wav"]
                  for piece in split_text(text, 250)]
        expected.append(coqui.join_pieces(pieces, backend.sample_rate))
    assert len(outputs) == 2
    for audio, reference in zip(outputs, expected):
        assert np.array_equal(audio, reference)


@pytest.mark.parametrize("value", [0, -2, 2.5, "4", True, None])
def test_bad_batch_size_is_refused_before_loading(folder, value, monkeypatch):
    monkeypatch.setattr(coqui, "load_model", lambda *args: pytest.fail("must refuse before loading"))
    with pytest.raises(ValueError, match=r"xtts backend: batch_size must be a positive integer .*got "):
        load(folder, batch_size=value)


def test_failed_piece_fails_its_utterance_only_and_is_retried(batched, conditioning, monkeypatch, caplog):
    texts = TEXTS[:3]
    bad = batched.text_tokens(SENTENCE)
    original = batched.decode
    failed = []

    def decode(tokens, *args):
        if tokens == bad and not failed:
            failed.append(1)
            raise RuntimeError("decoder broke")
        return original(tokens, *args)

    monkeypatch.setattr(batched, "decode", decode)
    results, failures = synthesize.synthesize_all(batched, conditioning, texts, seed=0, speaker="spk",
                                                  tts="xtts", max_retries=1, batch_size=3)
    assert failed and not failures and sorted(results) == [0, 1, 2]
    assert [results[i][1] for i in range(3)] == [synthesize.utterance_seed(0, "spk", "xtts", i, int(i == 1))
                                                 for i in range(3)]
    assert "decoder broke" in caplog.text


def test_failed_batch_is_rendered_one_by_one_with_the_same_audio(batched, conditioning, monkeypatch):
    texts, seeds = TEXTS[:2], [21, 22]
    together = batched.synthesize_batch(texts, conditioning, seeds)
    original = batched.generate_codes

    def generate_codes(tokens, *args):
        if len(tokens) > 1:
            raise RuntimeError("out of memory")
        return original(tokens, *args)

    monkeypatch.setattr(batched, "generate_codes", generate_codes)
    outcomes = synthesize.synthesize_chunk(batched, conditioning, texts, seeds)
    expected = [synthesize.check_output(audio, batched.sample_rate) for audio in together]
    assert [reason for _, reason in outcomes] == ["", ""]
    assert_same_audio([audio for audio, _ in outcomes], [audio for audio, _ in expected])
