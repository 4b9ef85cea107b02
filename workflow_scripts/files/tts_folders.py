"""Folders of speech that a TTS system made elsewhere (a TTS system of backend `folder`).

A speaker's files are found under the system's folder (config `tts.{name}.options.path`)
in one of these places, `{spk}` being the speaker's challenge id where the sheet gives one,
else its speaker id:

- `{path}/{team}_task1/{spk}/`: the challenge's Track 1 submission, as unzipped;
- `{path}/{spk}/`: the same without the team folder;
- `{path}/{speaker}/`: a plain folder of the speaker's speech.

In that folder, the audio files (AUDIO_SUFFIXES) are taken in one of two ways:

- with transcripts: every audio file has a same-stem `.txt` beside it, which gives its text;
  the files are used in the order of their names, numbers in them compared as numbers;
- numbered: no transcripts, and every name ends in a number (`F0_task1_07.wav`, `012.flac`);
  the numbers run without a gap from 0 or from 1, and the first file reads the first line of
  the speaker's sentences file, the next the next (Track 1: `{spk}_task1_00..49.wav`, the
  first 50 sentences).

This module reads names only (no audio, no third-party package), so the workflow can count a
speaker's files while it is parsed. workflow_scripts.tts.folder reads and checks the audio.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# the audio files taken from a folder, as files.audio.AUDIO_SUFFIXES (which imports numpy)
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
TRACK1_FOLDER_SUFFIX = "_task1"
TRAILING_NUMBER = re.compile(r"(\d+)$")


class SpeechFolderError(ValueError):
    """A folder of speech made elsewhere that cannot be used; the message names the place."""


@dataclass(frozen=True)
class SpeakerSpeech:
    """A speaker's files in a TTS system's folder, in order of use."""

    folder: Path
    audio: tuple[Path, ...]
    transcripts: tuple[Path, ...] | None  # same-stem .txt of each audio file; None: numbered

    @property
    def layout(self) -> str:
        return "numbered" if self.transcripts is None else "transcripts"

    def first(self, count: int) -> SpeakerSpeech:
        """The first `count` files (what a system's data sizes use), checked to be there."""
        if len(self.audio) < count:
            raise SpeechFolderError(
                f"{self.folder}: {len(self.audio)} audio files, fewer than the {count} utterances asked for"
            )
        transcripts = None if self.transcripts is None else self.transcripts[:count]
        return SpeakerSpeech(self.folder, self.audio[:count], transcripts)

    def files(self) -> list[str]:
        """Every file the speech is made of (audio and transcripts): a job's inputs."""
        return [str(p) for p in (*self.audio, *(self.transcripts or ()))]


def candidate_folders(root: Path, speaker: str, submission_id: str) -> list[Path]:
    """The speaker's folders under `root` that exist, in the order the module docstring lists."""
    ids = list(dict.fromkeys([submission_id, speaker]))
    track1 = sorted(p / submission_id for p in root.glob(f"*{TRACK1_FOLDER_SUFFIX}") if p.is_dir())
    found = [p for p in [*track1, *(root / i for i in ids)] if p.is_dir()]
    return list(dict.fromkeys(found))


def speaker_folder(root: str | Path, speaker: str, submission_id: str | None = None) -> Path:
    """The one folder of the speaker's speech under `root`."""
    root, submission_id = Path(root), submission_id or speaker
    if not root.is_dir():
        raise SpeechFolderError(f"{root}: folder of speech not found")
    found = candidate_folders(root, speaker, submission_id)
    if not found:
        places = [f"{root}/{{team}}{TRACK1_FOLDER_SUFFIX}/{submission_id}", f"{root}/{submission_id}"]
        if speaker != submission_id:
            places.append(f"{root}/{speaker}")
        raise SpeechFolderError(
            f"{root}: no folder of speaker {speaker}'s speech (looked for {', '.join(places)})"
        )
    if len(found) > 1:
        raise SpeechFolderError(
            f"{root}: speaker {speaker} has {len(found)} folders of speech, give it one:"
            f" {', '.join(map(str, found))}"
        )
    return found[0]


def natural_key(path: Path) -> list:
    """A name's sort key with its numbers compared as numbers (`utt2` before `utt10`)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def numbered_order(folder: Path, audio: list[Path]) -> tuple[Path, ...]:
    """The files by the number that ends their names, checked to run without a gap from 0 or 1."""
    numbered = {}
    for path in audio:
        match = TRAILING_NUMBER.search(path.stem)
        if not match:
            raise SpeechFolderError(
                f"{path}: no transcript ({path.with_suffix('.txt').name}) and no number at the end of"
                f" its name: the order of {folder}'s {len(audio)} audio files is unknown (give every"
                " file a same-stem .txt transcript, or number them in the order of the speaker's"
                " sentences)"
            )
        number = int(match.group(1))
        if number in numbered:
            raise SpeechFolderError(f"{folder}: {numbered[number].name} and {path.name} have the same number {number}")
        numbered[number] = path
    first = min(numbered)
    if first not in (0, 1):
        raise SpeechFolderError(
            f"{folder}: numbered files start at {first} ({numbered[first].name}); they must start at 0 or 1"
            " (the first sentence)"
        )
    gaps = [n for n in range(first, first + len(numbered)) if n not in numbered]
    if gaps:
        raise SpeechFolderError(
            f"{folder}: numbered files from {first} to {max(numbered)} lack {len(gaps)} numbers,"
            f" e.g. {gaps[0]}: each file reads the sentence of its number, so none may be missing"
        )
    return tuple(numbered[n] for n in sorted(numbered))


def speaker_speech(root: str | Path, speaker: str, submission_id: str | None = None) -> SpeakerSpeech:
    """The speaker's audio files (and transcripts) under `root`, in order of use."""
    return folder_speech(speaker_folder(root, speaker, submission_id))


def folder_speech(folder: str | Path) -> SpeakerSpeech:
    """The audio files (and transcripts) of one speaker's folder, in order of use."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SpeechFolderError(f"{folder}: folder of speech not found")
    audio = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES),
                   key=natural_key)
    if not audio:
        raise SpeechFolderError(f"{folder}: no audio files ({', '.join(AUDIO_SUFFIXES)})")
    stems = {}
    for path in audio:
        if path.stem in stems:
            raise SpeechFolderError(f"{folder}: two audio files of one name, {stems[path.stem].name} and {path.name}")
        stems[path.stem] = path
    with_text = [p for p in audio if p.with_suffix(".txt").is_file()]
    if with_text and len(with_text) < len(audio):
        without = [p for p in audio if p not in with_text]
        raise SpeechFolderError(
            f"{folder}: {len(with_text)} of {len(audio)} audio files have a same-stem .txt transcript,"
            f" {without[0].name} and {len(without) - 1} others do not: give every file one, or none"
            " (then the numbers in the names give each file its sentence)"
        )
    if with_text:
        return SpeakerSpeech(folder, tuple(audio), tuple(p.with_suffix(".txt") for p in audio))
    return SpeakerSpeech(folder, numbered_order(folder, audio), None)


def sizes_within(system: str, speeches: dict[str, SpeakerSpeech], needed: dict[str, int],
                 skip: bool) -> tuple[list[str], list[str]]:
    """The data sizes (`needed`: size -> utterances it uses) for which every speaker's folder holds
    enough files, and a warning for each size left out. A size beyond a folder is an error naming
    the folder, the speaker and both counts; with `skip`, the size is left out instead (all of
    them left out is an error)."""
    kept, warnings = [], []
    for size, wanted in needed.items():
        short = [(speaker, speech) for speaker, speech in speeches.items() if len(speech.audio) < wanted]
        if not short:
            kept.append(size)
            continue
        speaker, speech = short[0]
        problem = (f"{speech.folder}: speaker {speaker} has {len(speech.audio)} utterances, fewer than the"
                   f" {wanted} of data size {size} (train + val)")
        if not skip:
            raise SpeechFolderError(
                f"{problem}; add files, drop {size} from the conditions of {system}, or set"
                f" tts.{system}.options.missing_sizes: skip"
            )
        others = f" (and {len(short) - 1} more speaker{'s' if len(short) > 2 else ''})" if len(short) > 1 else ""
        warnings.append(f"{problem}{others}: {system} at {size} is left out (options.missing_sizes: skip)")
    if not kept:
        raise SpeechFolderError(f"no data size of {system} is left: " + "; ".join(warnings))
    return kept, warnings
