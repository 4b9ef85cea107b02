"""The GenDA 2025 challenge's submission layout.

- Track 1: per speaker, its first 50 given sentences as synthesized by one TTS system
  (the first 50 utterances of the system's speech folder) -> {speaker}_task1_00..49.wav;
- Track 2: per speaker, its challenge test mixtures enhanced by one model
  -> {speaker}_task2_00..44.wav, mixture NN -> output NN;
- one zip per track with a folder per speaker, as the challenge asks.

Audio is written as 16 kHz mono 16-bit PCM WAV, the format of the challenge's own mixtures.
Samples beyond full scale (an enhanced mixture can exceed it) are clipped, never wrapped,
and every clipped sample is counted in the log.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from workflow_scripts.files.audio import atomic_dir, atomic_path, write_pcm16
from workflow_scripts.files.corpora import text_key

log = logging.getLogger(__name__)

TRACK1_UTTERANCES = 50


def track1_rows(manifest: pd.DataFrame, sentences: list[str], count: int, speech_dir: Path,
                sentences_file: Path) -> pd.DataFrame:
    """The first `count` rows of a speech folder's manifest, checked to read the first `count`
    sentences of the speaker's sentences file, in order (matched on letters and digits)."""
    if len(manifest) < count or len(sentences) < count:
        raise ValueError(
            f"{speech_dir}: Track 1 needs the first {count} sentences: the speech folder has"
            f" {len(manifest)} utterances and {sentences_file} has {len(sentences)} lines"
        )
    rows = manifest.iloc[:count]
    for index, (text, sentence) in enumerate(zip(rows.text, sentences)):
        if text_key(str(text)) != text_key(sentence):
            raise ValueError(
                f"{speech_dir}/manifest.csv: row {index + 1} reads {text!r}, but line {index + 1} of"
                f" {sentences_file} is {sentence!r}"
            )
    return rows


def write_submission_folder(out_dir: Path, speaker: str, track: int, audios: Iterable[np.ndarray],
                            total: int | None = None) -> int:
    """{speaker}_task{track}_NN.wav of each audio in turn (16-bit PCM), atomically; returns how many."""
    count = 0
    clipped_files, clipped_samples, peak = [], 0, 0.0
    with atomic_dir(out_dir) as tmp:
        progress = tqdm(audios, total=total, desc=f"{speaker} task{track}", mininterval=5.0)
        for index, audio in enumerate(progress):
            name = f"{speaker}_task{track}_{index:02d}.wav"
            clipped = write_pcm16(tmp / name, audio)
            if clipped:
                clipped_files.append(name)
                clipped_samples += clipped
                peak = max(peak, float(np.max(np.abs(audio))))
            count += 1
    if clipped_files:
        log.warning("%s: %d of %d files exceeded full scale (peak %.3f): %d samples clipped to it (%s)",
                    out_dir, len(clipped_files), count, peak, clipped_samples, ", ".join(clipped_files))
    return count


def write_submission_zip(folders: list[Path], out: Path) -> int:
    """One zip of the speaker folders' wavs, each under its folder's name; returns how many files."""
    files = []
    for folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: export folder not found")
        files += [(path, f"{folder.name}/{path.name}") for path in sorted(folder.glob("*.wav"))]
    with atomic_path(out, ".tmp.zip") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, name in files:
            archive.write(path, name)
    return len(files)
