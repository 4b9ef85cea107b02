"""A TTS system that is a folder of speech made elsewhere: its layouts, the import_speech step's
checks at the edge, and the count of files against the data sizes (files.tts_folders,
workflow_scripts.tts.folder, workflow_scripts.import_speech)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from signals import speech_like

from workflow_scripts import import_speech as import_speech_step
from workflow_scripts.files import audio as audio_files
from workflow_scripts.files.audio import SAMPLE_RATE, AudioError, resample
from workflow_scripts.files.tts_folders import (
    AUDIO_SUFFIXES,
    SpeechFolderError,
    sizes_within,
    speaker_folder,
    speaker_speech,
)
from workflow_scripts.tts import get_backend
from workflow_scripts.tts.folder import import_speech

SENTENCES = ["The sun is shining today.", "I like to read good books.", "We went to the park.",
             "Please open the door.", "It rained all night.", "The tea is hot."]


def speech(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    return speech_like(int(seconds * SAMPLE_RATE), seed)


def write(path: Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, sample_rate, **kwargs)
    return path


def track1_folder(root: Path, spk: str, count: int, team: str | None = "team") -> Path:
    """{root}/{team}_task1/{spk}/{spk}_task1_NN.wav (or without the team folder), as the challenge asks."""
    folder = root / f"{team}_task1" / spk if team else root / spk
    for index in range(count):
        write(folder / f"{spk}_task1_{index:02d}.wav", speech(seed=index), subtype="PCM_16")
    return folder


@pytest.fixture
def sentences_txt(tmp_path) -> Path:
    path = tmp_path / "sentences.txt"
    path.write_text("\n".join(SENTENCES) + "\n")
    return path


def leftovers(folder: Path) -> list[str]:
    """What a refused import left beside its output folder."""
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}"))


# ---- layouts ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("team", ["team", None], ids=["with-team-folder", "speaker-folder"])
def test_track1_layout_in_the_order_of_its_numbers(tmp_path, team):
    folder = track1_folder(tmp_path / "sub", "F0", 12, team)
    found = speaker_speech(tmp_path / "sub", "F0")
    assert found.folder == folder and found.layout == "numbered" and found.transcripts is None
    assert [p.name for p in found.audio] == [f"F0_task1_{i:02d}.wav" for i in range(12)]


def test_the_challenge_id_names_the_speakers_folder(tmp_path):
    folder = track1_folder(tmp_path / "sub", "VirtualF0", 3)
    assert speaker_folder(tmp_path / "sub", "vf0", "VirtualF0") == folder
    with pytest.raises(SpeechFolderError, match=r"no folder of speaker vf0's speech \(looked for .*team\}_task1/vf0"):
        speaker_folder(tmp_path / "sub", "vf0")


def test_plain_layout_with_transcripts_in_natural_order(tmp_path):
    folder = tmp_path / "sub" / "ana"
    for name in ["utt10", "utt2", "utt1"]:
        write(folder / f"{name}.flac", speech(), format="FLAC")
        (folder / f"{name}.txt").write_text(f"text of {name}\n")
    (folder / "notes.md").write_text("not audio")
    found = speaker_speech(tmp_path / "sub", "ana")
    assert found.layout == "transcripts"
    assert [p.name for p in found.audio] == ["utt1.flac", "utt2.flac", "utt10.flac"]
    assert [p.name for p in found.transcripts] == ["utt1.txt", "utt2.txt", "utt10.txt"]
    assert found.files()[-1].endswith("utt10.txt")


def test_plain_numbered_files_from_one(tmp_path):
    folder = tmp_path / "sub" / "ana"
    for number in [3, 1, 2]:
        write(folder / f"{number:03d}.wav", speech())
    assert [p.name for p in speaker_speech(tmp_path / "sub", "ana").audio] == ["001.wav", "002.wav", "003.wav"]


@pytest.mark.parametrize(
    "names, transcripts, message",
    [
        (["a.wav", "b.wav"], [], "a.wav: no transcript (a.txt) and no number at the end of its name"),
        (["1.wav", "2.wav", "4.wav"], [], "from 1 to 4 lack 1 numbers, e.g. 3"),
        (["5.wav", "6.wav"], [], "numbered files start at 5"),
        (["u1.wav", "u01.wav"], [], "have the same number 1"),
        (["u1.wav", "u1.flac"], [], "two audio files of one name"),
        (["u1.wav", "u2.wav", "u3.wav"], ["u1"], "1 of 3 audio files have a same-stem .txt transcript, u2.wav"),
        ([], [], "no audio files"),
    ],
    ids=["no-order", "gap", "bad-start", "same-number", "same-stem", "some-transcripts", "empty"],
)
def test_a_folder_whose_order_is_unclear_is_refused(tmp_path, names, transcripts, message):
    folder = tmp_path / "sub" / "ana"
    folder.mkdir(parents=True)
    for name in names:
        write(folder / name, speech(), format="FLAC" if name.endswith(".flac") else "WAV")
    for stem in transcripts:
        (folder / f"{stem}.txt").write_text("a text")
    with pytest.raises(SpeechFolderError, match=re.escape(message)):
        speaker_speech(tmp_path / "sub", "ana")


def test_the_first_files_are_taken_when_there_are_enough(tmp_path):
    track1_folder(tmp_path, "F0", 5)
    found = speaker_speech(tmp_path, "F0")
    assert [p.name for p in found.first(3).audio] == [f"F0_task1_{i:02d}.wav" for i in range(3)]
    with pytest.raises(SpeechFolderError, match="team_task1/F0: 5 audio files, fewer than the 6 utterances asked for"):
        found.first(6)


def test_missing_and_ambiguous_folders_are_named(tmp_path):
    with pytest.raises(SpeechFolderError, match="folder of speech not found"):
        speaker_speech(tmp_path / "nowhere", "F0")
    track1_folder(tmp_path / "sub", "F0", 2, "teamA")
    track1_folder(tmp_path / "sub", "F0", 2, "teamB")
    with pytest.raises(SpeechFolderError, match="speaker F0 has 2 folders of speech.*teamA_task1/F0.*teamB_task1/F0"):
        speaker_speech(tmp_path / "sub", "F0")


def test_the_layout_reader_knows_the_audio_suffixes_of_files_audio():
    assert AUDIO_SUFFIXES == audio_files.AUDIO_SUFFIXES


# ---- counts against the data sizes --------------------------------------------------------------


def test_a_data_size_beyond_a_folder_is_refused_or_skipped(tmp_path):
    for spk in ["F0", "M0"]:
        track1_folder(tmp_path, spk, 50)
    speeches = {spk: speaker_speech(tmp_path, spk) for spk in ["F0", "M0"]}
    needed = {"6min": 50, "30min": 230}
    with pytest.raises(SpeechFolderError, match=r"team_task1/F0: speaker F0 has 50 utterances, fewer than the 230 of"
                                                r" data size 30min .*missing_sizes: skip"):
        sizes_within("mysys", speeches, needed, skip=False)
    kept, warnings = sizes_within("mysys", speeches, needed, skip=True)
    assert kept == ["6min"]
    assert len(warnings) == 1 and "(and 1 more speaker)" in warnings[0] and "mysys at 30min is left out" in warnings[0]


# ---- the import: every file checked, 16 kHz mono, nothing partial ---------------------------------


def test_44k_stereo_is_imported_as_16k_mono_with_the_sentences_as_text(tmp_path, sentences_txt):
    folder = tmp_path / "sub" / "team_task1" / "F0"
    for index in range(4):
        mono = resample(speech(1.5, index), SAMPLE_RATE, 44100)
        write(folder / f"F0_task1_{index:02d}.wav", np.stack([mono, 0.5 * mono], axis=1), 44100)
    out = tmp_path / "speech" / "mysys" / "F0"
    import_speech_step.main(["--speaker-dir", str(folder), "--speaker", "F0", "--sentences", str(sentences_txt),
                             "--tts", "mysys", "--num-utterances", "4", "--out-dir", str(out)])
    manifest = pd.read_csv(out / "manifest.csv")
    assert list(manifest.columns[:4]) == ["utt_id", "path", "text", "duration_s"]
    assert list(manifest.text) == SENTENCES[:4]
    assert list(manifest.utt_id) == [f"F0_mysys_{i:04d}" for i in range(4)]
    assert manifest.source.iloc[2].endswith("F0_task1_02.wav")
    for row in manifest.itertuples():
        audio, rate = sf.read(out / row.path, dtype="float32", always_2d=True)
        assert rate == SAMPLE_RATE and audio.shape[1] == 1 and sf.info(out / row.path).subtype == "FLOAT"
        assert abs(audio.shape[0] - 1.5 * SAMPLE_RATE) <= 2 and row.duration_s == pytest.approx(1.5, abs=1e-3)
        assert np.max(np.abs(audio)) == pytest.approx(0.9, abs=1e-6)  # peak-normalised as synthesize's
    assert pd.read_csv(out / "failures.csv").empty


def test_transcripts_give_the_text(tmp_path, sentences_txt):
    folder = tmp_path / "sub" / "ana"
    write(folder / "b.wav", speech())
    (folder / "b.txt").write_text("  Hello\n  world.  \n")
    manifest = import_speech(speaker_speech(tmp_path / "sub", "ana"), sentences_txt, "ana", "mine",
                             tmp_path / "out")
    assert list(manifest.text) == ["Hello world."]


def test_more_numbered_files_than_sentences_is_refused(tmp_path, sentences_txt):
    track1_folder(tmp_path / "sub", "F0", len(SENTENCES) + 1)
    out = tmp_path / "out"
    with pytest.raises(SpeechFolderError, match=rf"7 numbered files, but {sentences_txt} has only 6 sentences"):
        import_speech(speaker_speech(tmp_path / "sub", "F0"), sentences_txt, "F0", "mine", out)
    assert not out.exists() and not leftovers(out)


BAD_FILES = {
    "silent": lambda path: write(path, np.zeros(SAMPLE_RATE, dtype=np.float32), subtype="FLOAT"),
    "nan": lambda path: write(path, np.where(np.arange(SAMPLE_RATE) == 5, np.nan, speech()).astype(np.float32),
                              subtype="FLOAT"),
    "short": lambda path: write(path, speech(0.2)),
    "unreadable": lambda path: path.write_text("this is not audio"),
    "truncated": lambda path: path.write_bytes(write(path, speech(), subtype="PCM_16").read_bytes()[:-8000]),
}
BAD_MESSAGES = {
    "silent": "speech is silent",
    "nan": "audio contains NaN or Inf samples",
    "short": "0.20 s long, shorter than the 0.5 s of options.min_seconds",
    "unreadable": "cannot read audio",
    "truncated": "truncated WAV file",
}


def test_every_bad_file_is_named_and_nothing_is_imported(tmp_path, sentences_txt):
    folder = track1_folder(tmp_path / "sub", "F0", len(SENTENCES))
    bad = {}
    for index, kind in enumerate(BAD_FILES):
        path = folder / f"F0_task1_{index:02d}.wav"
        path.unlink()
        BAD_FILES[kind](path)
        bad[kind] = path
    out = tmp_path / "speech" / "mysys" / "F0"
    with pytest.raises(AudioError) as error:
        import_speech(speaker_speech(tmp_path / "sub", "F0"), sentences_txt, "F0", "mysys", out)
    message = str(error.value)
    assert message.startswith(f"{folder}: 5 of 6 files cannot be used, nothing imported")
    for kind, path in bad.items():
        assert f"{path}: {BAD_MESSAGES[kind]}" in message, (kind, message)
    assert not out.exists() and not leftovers(out)


def test_a_clipped_file_is_imported_with_a_warning_naming_it(tmp_path, sentences_txt, caplog):
    folder = track1_folder(tmp_path / "sub", "F0", 2)
    clipped = folder / "F0_task1_01.wav"
    write(clipped, np.clip(4 * speech(), -1.0, 1.0), subtype="FLOAT")
    with caplog.at_level(logging.WARNING):
        manifest = import_speech(speaker_speech(tmp_path / "sub", "F0"), sentences_txt, "F0", "mysys", tmp_path / "o")
    assert len(manifest) == 2
    assert any(str(clipped) in r.message and "clipped" in r.message for r in caplog.records)


def test_the_folder_backend_loads_nothing_and_synthesizes_nothing():
    backend = get_backend("folder", path="submissions/mysys")
    with pytest.raises(RuntimeError, match="imported by import_speech, never synthesized"):
        backend.synthesize("text", {}, 0)
