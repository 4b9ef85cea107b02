"""A speaker's own files, checked when the speaker sheet is read, before any job runs.

What can be known without decoding audio is checked here: each audio file opens (its header, by
soundfile.info) and is not cut short (its RIFF chunk sizes), the enrollment clip is long enough,
the sentences file holds enough sentences of at most MAX_SENTENCE_CHARS characters for the largest
data size a TTS system is asked for, and the gt folder holds enough recordings for the largest gt
data size. Each problem names the user's file and, where a number comes from the config, its key.
The jobs keep their own checks (prepare_speaker, prepare_gt and synthesize run alone too) and decode
the audio: a silent or NaN recording is found there.

This module is imported by rules/common.smk on every parse: the audio modules (files.audio brings
scipy) are imported only when a speaker of the sheet has files of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# sheet column -> what the folder holds, as audio_files names it
FOLDERS = {"noises": "noise", "test_clean": "clean test", "test_mixtures": "test mixtures", "gt": "gt"}


@dataclass(frozen=True)
class Demand:
    """How many utterances the workflow will ask of a file or folder, and which config sets it."""

    count: int
    why: str  # e.g. "data size 32utt of worldclone (config data_sizes.32utt: val 4 + train 32)"


def largest_size(data_sizes: dict, size_names: list[str], source: str) -> Demand | None:
    """The largest of `size_names` (val + train utterances) at which `source` is configured."""
    if not size_names:
        return None
    name = max(size_names, key=lambda n: data_sizes[n]["val"] + data_sizes[n]["train"])
    val, train = data_sizes[name]["val"], data_sizes[name]["train"]
    return Demand(val + train, f"data size {name} of {source} (config data_sizes.{name}: val {val} + train {train})")


def synthesis_demand(data_sizes: dict, conditions: dict, tts_systems: list[str], count: int,
                     track1_count: int) -> Demand | None:
    """The `count` sentences each TTS system synthesizes (the largest data size of any source, or
    Track 1's sentences), with the config that asks that many; None without TTS systems."""
    if not tts_systems:
        return None
    sources = tts_systems + [s for s in conditions if s not in tts_systems]  # systems read them
    demands = [largest_size(data_sizes, conditions[source], source) for source in sources]
    demands.append(Demand(track1_count, f"Track 1's {track1_count} sentences (config export.task1)"))
    why = [d.why for d in demands if d and d.count == count]
    return Demand(count, why[0] if why else "config data_sizes")


def audio_problem(path: Path) -> str | None:
    """What keeps a file from being read as audio (missing, not audio, cut short, empty), or None."""
    import soundfile as sf

    from workflow_scripts.files.audio import wav_shortfall

    if not path.is_file():
        return f"{path}: audio file not found"
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError, OSError, ValueError) as exc:
        return f"{path}: cannot read audio ({exc})"
    if path.suffix.lower() == ".wav" and (shortfall := wav_shortfall(path)):
        promised, present = shortfall
        return (f"{path}: truncated WAV file: its header promises {promised} bytes of audio, the file"
                f" holds {present} (an incomplete copy or download?)")
    if info.frames == 0:
        return f"{path}: audio file is empty (0 samples)"
    return None


def enrollment_problem(path: Path, min_seconds: float) -> str | None:
    import soundfile as sf

    if problem := audio_problem(path):
        return problem
    info = sf.info(str(path))
    seconds = info.frames / info.samplerate
    if seconds < min_seconds:
        return (f"{path}: enrollment clip is {seconds:.2f} s long, shorter than the {min_seconds:g} s of"
                " config enrollment.min_seconds")
    return None


def sentences_problem(path: Path, demand: Demand | None) -> str | None:
    """Every line a sentence within the length limit, and as many as `demand` asks."""
    from workflow_scripts.files.sentences import read_sentence_file

    try:
        sentences = read_sentence_file(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return str(exc) if str(path) in str(exc) else f"{path}: {exc}"
    if demand and len(sentences) < demand.count:
        return (f"{path}: {len(sentences)} sentences, fewer than the {demand.count} of the largest"
                f" synthesized set, {demand.why}")
    return None


def folder_problem(folder: Path, what: str, demand: Demand | None = None) -> str | None:
    """The folder holds audio files, each readable, and as many as `demand` asks."""
    from workflow_scripts.files.audio import audio_files

    try:
        files = audio_files(folder, what)
    except (OSError, ValueError) as exc:
        return str(exc)
    for path in files:
        if problem := audio_problem(path):
            return problem
    if demand and len(files) < demand.count:
        return (f"{folder}: {len(files)} recordings, fewer than the {demand.count} of"
                f" {demand.why}")
    return None


def user_files_problem(row: dict, min_enrollment_s: float, sentences: Demand | None,
                       gt: Demand | None) -> str | None:
    """The first problem with the files a sheet row names (column and path in the message), or
    None. `sentences` and `gt` are what the TTS systems and the gt condition will ask (None where
    nothing is asked); columns the row leaves empty are not read."""

    def named(column: str) -> Path | None:
        value = row.get(column)
        return Path(value) if isinstance(value, str) and value.strip() else None

    checks = [
        ("enrollment", lambda p: enrollment_problem(p, min_enrollment_s)),
        ("sentences", lambda p: sentences_problem(p, sentences)),
        *[(column, lambda p, what=what, column=column: folder_problem(p, what, gt if column == "gt" else None))
          for column, what in FOLDERS.items()],
    ]
    for column, check in checks:
        path = named(column)
        if path is not None and (problem := check(path)):
            return f"`{column}`: {problem}"
    return None
