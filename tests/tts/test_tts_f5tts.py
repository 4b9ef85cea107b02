"""F5-TTS backend on a tiny random checkpoint of the real architecture (F5-TTS's DiT + Vocos).

The checkpoint (workflow_scripts/testing/tiny_f5tts.py) is saved as the hub's F5TTS_v1_Base
folder is and loaded through F5-TTS's own load_model and load_vocoder from local folders,
with the network off. What the random model says is noise: the tests check shapes, rates,
seeds, the transcript's source, the text split and the license guard.
"""

import numpy as np
import pytest
import torch

pytest.importorskip("f5_tts", reason="f5-tts is installed with `pip install --no-deps f5-tts==1.1.22` "
                                     "(Makefile; its own requirements clash with pyproject.toml's pins)")

from workflow_scripts import clone_voice, synthesize  # noqa: E402
from workflow_scripts.files.audio import SAMPLE_RATE, read_audio, write_audio  # noqa: E402
from workflow_scripts.testing.tiny_f5tts import build_f5tts, build_vocos  # noqa: E402
from workflow_scripts.tts import EnrollmentText, get_backend  # noqa: E402
from workflow_scripts.tts.f5tts import REFERENCE_CLIP_MS, SHEET_SOURCE, prepare_reference  # noqa: E402
from workflow_scripts.world.voices import render_flite  # noqa: E402

ENROLLMENT_TEXT = "My name is Paul and I live in a small town."
LONG_TEXT = ("When the sunlight strikes raindrops in the air, they act as a prism and form a rainbow. "
             "The rainbow is a division of white light into many beautiful colors. These take the shape "
             "of a long round arch, with its path high above, and its two ends apparently beyond the "
             "horizon. There is, according to legend, a boiling pot of gold at one end. People look, but "
             "no one ever finds it. When a man looks for something beyond his reach, his friends say he "
             "is looking for the pot of gold at the end of the rainbow.")


@pytest.fixture(autouse=True)
def offline_and_accepted(monkeypatch):
    """No network (the hub client fails if asked), and the weights' license accepted."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("F5TTS_CC_BY_NC_ACCEPTED", "1")
    import huggingface_hub

    def no_fetch(*args, **kwargs):
        raise AssertionError(f"network fetch attempted: {args} {kwargs}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_fetch)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("f5tts")
    return {"model": build_f5tts(root / "F5TTS_v1_Base"), "vocoder": build_vocos(root / "vocos"), "root": root}


@pytest.fixture(scope="module")
def enrollment():
    return render_flite(ENROLLMENT_TEXT, "kal16")


@pytest.fixture
def backend(models):
    return get_backend("f5tts", model=models["model"], vocoder=models["vocoder"], nfe_step=4,
                       model_dir=str(models["root"] / "cache"))


@pytest.fixture
def conditioning(backend, enrollment):
    return backend.compute_conditioning(enrollment, SAMPLE_RATE, enrollment_text=EnrollmentText(ENROLLMENT_TEXT))


def test_refuses_to_start_without_the_license(models, monkeypatch):
    monkeypatch.delenv("F5TTS_CC_BY_NC_ACCEPTED")
    with pytest.raises(PermissionError, match=r"CC BY-NC 4\.0.*accept_licenses: \[f5tts_cc_by_nc\]"):
        get_backend("f5tts", model=models["model"], vocoder=models["vocoder"])


def test_unknown_option_and_bad_values_are_refused(models):
    with pytest.raises(TypeError, match="unknown options.*nfe_step"):
        get_backend("f5tts", model=models["model"], steps=4)
    with pytest.raises(ValueError, match="max_batch must be a positive integer"):
        get_backend("f5tts", model=models["model"], max_batch=0)


def test_conditioning_keeps_the_sheet_transcript(conditioning, enrollment):
    assert conditioning["reference_text_source"] == SHEET_SOURCE
    assert conditioning["reference_text"] == ENROLLMENT_TEXT + " "  # F5-TTS's closing ". "
    reference = conditioning["reference_audio"]
    assert conditioning["reference_sample_rate"] == SAMPLE_RATE and reference.dtype == np.float32
    # silent edges cut, 50 ms of silence appended: about the clip's length, never longer than it plus that
    assert 0.5 * enrollment.size < reference.size <= enrollment.size + 0.05 * SAMPLE_RATE


def test_without_a_transcript_the_asr_writes_it_and_is_named(backend, enrollment):
    conditioning = backend.compute_conditioning(enrollment, SAMPLE_RATE,
                                                enrollment_text=EnrollmentText("", asr="pocketsphinx"))
    assert conditioning["reference_text_source"] == "pocketsphinx-en-us"
    assert conditioning["reference_text"].strip() and conditioning["reference_text"].endswith(". ")
    with pytest.raises(ValueError, match="enrollment_text.*tts_scoring.asr"):
        backend.compute_conditioning(enrollment, SAMPLE_RATE, enrollment_text=EnrollmentText("", asr="none"))


def test_a_long_clip_is_cut_at_a_pause_only_when_the_asr_transcribes_it():
    sentences = [render_flite(f"This is sentence number {n} of a long enrollment clip.", "slt") for n in range(5)]
    pause = np.zeros(int(1.5 * SAMPLE_RATE), dtype=np.float32)
    clip = np.concatenate([part for sentence in sentences for part in (sentence, pause)])
    assert clip.size > 2 * REFERENCE_CLIP_MS / 1000 * SAMPLE_RATE / 1.5
    cut = prepare_reference(clip, SAMPLE_RATE, cut_long=True)
    whole = prepare_reference(clip, SAMPLE_RATE, cut_long=False)
    assert cut.size <= (REFERENCE_CLIP_MS + 50) / 1000 * SAMPLE_RATE < whole.size
    assert whole.size > clip.size - 2 * pause.size  # only the silent edges are gone


def test_synthesis_is_24k_finite_and_reproducible_per_seed(backend, conditioning):
    texts = ["Hello world.", "A somewhat longer sentence to read here, with a clause.", "Hi there!"]
    batch = backend.synthesize_batch(texts, conditioning, [1, 2, 3])
    assert backend.sample_rate == 24000 and len(batch) == 3
    for audio in batch:
        assert audio.dtype == np.float32 and audio.ndim == 1 and audio.size > 0
        assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) > 0
    assert batch[1].size > batch[0].size  # the length follows the text
    again = backend.synthesize_batch(texts, conditioning, [1, 2, 3])
    assert all(np.array_equal(a, b) for a, b in zip(batch, again))
    other = backend.synthesize_batch(texts, conditioning, [4, 2, 3])
    assert not np.array_equal(other[0], batch[0]) and np.array_equal(other[1], batch[1])
    alone = backend.synthesize(texts[1], conditioning, 2)
    # a row's noise is its seed's; in a batch its attention also sees the padding (as F5-TTS batches)
    assert alone.size == batch[1].size and np.corrcoef(alone, batch[1])[0, 1] > 0.9


def test_long_text_is_split_at_sentences_and_never_truncated(backend, conditioning):
    reference_s = conditioning["reference_audio"].size / SAMPLE_RATE
    pieces = backend.split(LONG_TEXT, conditioning["reference_text"], reference_s)
    assert len(pieces) > 1 and " ".join(pieces) == " ".join(LONG_TEXT.split())
    assert all(piece.endswith((".", ",")) for piece in pieces[:-1])
    long_audio = backend.synthesize(LONG_TEXT, conditioning, 0)
    piece_sizes = [backend.synthesize(piece, conditioning, 0).size for piece in pieces]  # a length is its text's
    fades = (len(pieces) - 1) * int(backend.cross_fade_s * backend.sample_rate)
    assert long_audio.size == sum(piece_sizes) - fades


def test_clone_voice_and_synthesize_steps(models, enrollment, tmp_path):
    enrollment_wav = tmp_path / "enrollment.wav"
    write_audio(enrollment_wav, enrollment)
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("The sun is shining today.\nWe went to the park.\nPlease open the door.\n")
    options = (f'{{"model": "{models["model"]}", "vocoder": "{models["vocoder"]}", "nfe_step": 4, '
               '"max_batch": 2}')
    voice = tmp_path / "voice.pt"
    with pytest.raises(ValueError, match="enrollment_text.*tts_scoring.asr"):  # before any model is loaded
        clone_voice.main(["--backend", "f5tts", "--options-json", options, "--enrollment", str(enrollment_wav),
                          "--out", str(voice), "--device", "cpu", "--asr", "none"])
    assert not voice.exists()
    clone_voice.main(["--backend", "f5tts", "--options-json", options, "--enrollment", str(enrollment_wav),
                      "--out", str(voice), "--device", "cpu", "--asr", "pocketsphinx"])
    record = torch.load(voice, weights_only=False)
    assert record["backend"] == "f5tts" and record["conditioning"]["reference_text_source"] == "pocketsphinx-en-us"
    speech = tmp_path / "speech"
    synthesize.main(["--backend", "f5tts", "--options-json", options, "--voice", str(voice), "--sentences",
                     str(sentences), "--num-utterances", "3", "--speaker", "spk", "--tts", "f5tts", "--seed", "0",
                     "--device", "cpu", "--batch-size", "3", "--out-dir", str(speech)])
    wavs = sorted(speech.glob("wavs/*.wav"))
    assert len(wavs) == 3
    for wav in wavs:
        audio = read_audio(wav)
        assert audio.size > 0 and np.all(np.isfinite(audio))
