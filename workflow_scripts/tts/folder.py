"""A TTS system whose speech was made elsewhere (backend `folder`): its files become a speech folder.

There is no model and no conditioning: the import_speech step takes a speaker's files from
the system's folder (found and ordered by files.tts_folders), checks each one at the edge,
reads it as 16 kHz mono float32 (other rates resampled, channels averaged, once),
peak-normalises it as synthesize does its outputs, and writes the speech folder that
synthesize would (files.folders), so that scoring, fine-tuning and the tables treat the
system as any other. A file that cannot be used stops the import with every such file named,
and nothing is written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workflow_scripts.files.audio import SAMPLE_RATE, AudioError, atomic_dir, peak_normalize, read_checked
from workflow_scripts.files.folders import write_failure_table, write_speech_folder
from workflow_scripts.files.sentences import read_sentence_file
from workflow_scripts.files.tts_folders import SpeakerSpeech, SpeechFolderError
from workflow_scripts.tts import TTSBackend

log = logging.getLogger(__name__)

SILENCE_PEAK = 1e-4  # a file whose peak |x| is below this counts as silent (as synthesize's outputs)
MIN_SECONDS = 0.5  # options.min_seconds when not given: a shorter file is refused


class FolderBackend(TTSBackend):
    """The registry's entry for speech made elsewhere: nothing to load, nothing to synthesize."""

    name = "folder"

    def __init__(self, device: str = "cpu", path: str | None = None, missing_sizes: str = "refuse",
                 min_seconds: float = MIN_SECONDS, **options: Any) -> None:
        super().__init__(device, path=path, missing_sizes=missing_sizes, min_seconds=min_seconds, **options)

    def _refuse(self):
        raise RuntimeError(
            f"TTS backend 'folder' ({self.options['path']}) brings speech made elsewhere: its speech is"
            " imported by import_speech, never synthesized or conditioned on a voice"
        )

    def compute_conditioning(self, enrollment: np.ndarray, sample_rate: int) -> dict:
        self._refuse()

    def synthesize(self, text: str, conditioning: dict, seed: int) -> np.ndarray:
        self._refuse()


def utterance_texts(speech: SpeakerSpeech, sentences_txt: Path) -> list[str]:
    """What each file reads, white space folded: its transcript, or the speaker's sentence of its
    number (the first file the first line)."""
    if speech.transcripts is not None:
        texts = [" ".join(path.read_text(encoding="utf-8").split()) for path in speech.transcripts]
        empty = [path for path, text in zip(speech.transcripts, texts) if not text]
        if empty:
            raise SpeechFolderError(f"{empty[0]}: transcript is empty ({len(empty)} of {len(texts)} are)")
        return texts
    sentences = [" ".join(line.split()) for line in read_sentence_file(sentences_txt)]
    if len(sentences) < len(speech.audio):
        raise SpeechFolderError(
            f"{speech.folder}: {len(speech.audio)} numbered files, but {sentences_txt} has only"
            f" {len(sentences)} sentences for them to read (last: {speech.audio[-1].name})"
        )
    return sentences[: len(speech.audio)]


def read_utterance(path: Path, min_seconds: float) -> tuple[np.ndarray | None, str]:
    """(16 kHz peak-normalised audio, "") of a usable file, else (None, what is wrong with it)."""
    try:
        audio = read_checked(path, "speech")  # unreadable, truncated, empty, NaN, all zeros; clipping logged
    except AudioError as exc:
        return None, str(exc)
    peak = float(np.max(np.abs(audio)))
    if peak < SILENCE_PEAK:
        return None, f"{path}: speech is silent (peak {peak:.1e}, below {SILENCE_PEAK:g})"
    if audio.size < min_seconds * SAMPLE_RATE:
        return None, (f"{path}: {audio.size / SAMPLE_RATE:.2f} s long, shorter than the {min_seconds:g} s"
                      " of options.min_seconds")
    return peak_normalize(audio), ""


def import_speech(speech: SpeakerSpeech, sentences_txt: Path, speaker: str, tts: str, out_dir: Path,
                  min_seconds: float = MIN_SECONDS) -> pd.DataFrame:
    """Check every file of `speech` and write them as the speech folder `out_dir` (utt_id, path, text,
    duration_s, source: the file it came from), in order, atomically; returns its manifest."""
    texts = utterance_texts(speech, sentences_txt)
    problems: list[str] = []

    def rows() -> Iterator[dict]:
        for index, (path, text) in enumerate(zip(speech.audio, texts)):
            audio, problem = read_utterance(path, min_seconds)
            if audio is None:
                problems.append(problem)
                continue
            yield {"utt_id": f"{speaker}_{tts}_{index:04d}", "audio": audio, "text": text, "source": str(path)}

    with atomic_dir(out_dir) as tmp:
        manifest = write_speech_folder(tmp, rows(), duration_decimals=6, extra_columns=("source",))
        if problems:
            raise AudioError(
                f"{speech.folder}: {len(problems)} of {len(speech.audio)} files cannot be used, nothing"
                " imported:\n  " + "\n  ".join(problems)
            )
        write_failure_table(tmp, [])
    return manifest
