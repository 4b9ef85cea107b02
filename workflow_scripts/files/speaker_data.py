"""Library of the prepare steps: a speaker's folders from recordings on disk.

The folders are those the demo world has (see build_world): a speech folder
(manifest.csv), a noise folder (noises.csv) and a test folder (test.csv). A test
folder made of mixtures without clean references leaves `clean` empty; the
evaluation then enhances them and records the reference metrics as not applicable.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from tqdm import tqdm

from workflow_scripts.files.audio import SAMPLE_RATE, AudioError, power, read_audio, write_audio
from workflow_scripts.files.corpora import text_key

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
TEST_COLUMNS = ["mixture_id", "mixture", "clean", "noise_id", "snr_db"]


def audio_files(folder: str | Path, what: str) -> list[Path]:
    """The audio files directly in `folder`, by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: {what} folder not found")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise AudioError(f"{folder}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in the {what} folder")
    return files


@contextlib.contextmanager
def staging_dir(out_dir: Path):
    """A temporary sibling folder of `out_dir` for outputs that are moved into place one by one;
    removed on leaving, whatever is left in it."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def speaker_seed(seed: int, speaker: str) -> list[int]:
    """A seed sequence of (config seed, speaker id), stable across runs and machines."""
    return [seed, zlib.crc32(speaker.encode("utf-8"))]


def read_checked(path: str | Path, what: str) -> np.ndarray:
    """16 kHz mono float32 audio that is not silent."""
    audio = read_audio(path)
    if power(audio) == 0.0:
        raise AudioError(f"{path}: {what} is silent")
    return audio


def read_sentence_file(path: str | Path) -> list[str]:
    """One sentence per line; blank lines at the end are ignored, others are an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: sentences file not found")
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise ValueError(f"{path}: line {number} is empty")
    if not lines:
        raise ValueError(f"{path}: no sentences")
    return [line.strip() for line in lines]


# ---- folders ----------------------------------------------------------------------


def write_speech_folder(folder: Path, rows: list[dict]) -> pd.DataFrame:
    """wavs/{utt_id}.wav and manifest.csv; each row has utt_id, audio, text and any extra columns."""
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for row in rows:
        path = f"wavs/{row['utt_id']}.wav"
        write_audio(folder / path, row["audio"])
        extra = {k: v for k, v in row.items() if k not in ("utt_id", "audio", "text")}
        records.append({"utt_id": row["utt_id"], "path": path, "text": row["text"],
                        "duration_s": round(row["audio"].size / SAMPLE_RATE, 4), **extra})
    manifest = pd.DataFrame(records)
    manifest.to_csv(folder / "manifest.csv", index=False)
    return manifest


def write_noise_folder(folder: Path, speaker: str, noises: list[dict]) -> pd.DataFrame:
    """{noise_id}.wav and noises.csv; each noise has name, kind, source and audio.

    A noise set may list the same recording twice (as the challenge's does): each
    entry is its own noise of the set, numbered by position.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, noise in enumerate(noises):
        noise_id = f"{speaker}_noise{index:02d}_{Path(noise['name']).stem}"
        write_audio(folder / f"{noise_id}.wav", noise["audio"])
        rows.append({"noise_id": noise_id, "path": f"{noise_id}.wav", "kind": noise["kind"],
                     "duration_s": round(noise["audio"].size / SAMPLE_RATE, 4),
                     "params": json.dumps({"source": noise["source"]})})
    table = pd.DataFrame(rows)
    table.to_csv(folder / "noises.csv", index=False)
    return table


def write_mixture_folder(folder: Path, speaker: str, mixtures: list[Path], suffix: str = "mixed") -> pd.DataFrame:
    """A test folder of mixtures without clean references: `clean`, `noise_id`, `snr_db` empty.

    Mixture i is {speaker}_{suffix}_{i:02d} (the challenge's numbering), converted to 16 kHz mono float32.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, source in enumerate(tqdm(mixtures, desc=f"{speaker} mixtures", mininterval=5.0)):
        mixture_id = f"{speaker}_{suffix}_{index:02d}"
        write_audio(folder / f"mixtures/{mixture_id}.wav", read_checked(source, "mixture"))
        rows.append({"mixture_id": mixture_id, "mixture": f"mixtures/{mixture_id}.wav", "clean": "",
                     "noise_id": "", "snr_db": "", "source": source.name})
    table = pd.DataFrame(rows, columns=TEST_COLUMNS + ["source"])
    table.to_csv(folder / "test.csv", index=False)
    return table


# ---- LibriTTS speakers --------------------------------------------------------------


def libritts_roles(utterances: pd.DataFrame, sentences: list[str], enrollment: str | Path | None = None
                   ) -> pd.DataFrame:
    """Each utterance's role: `enrollment` (the enrollment clip itself), `sentence` (it reads one of
    the speaker's sentences: real speech for gt) or `held_out` (neither: the test set is drawn
    from these). `sentence_index` orders the sentence readings as the sentences file does.

    The enrollment clip (when given) is recognised as the utterance of the same sample rate and length.
    """
    first_index = {}
    for index, sentence in enumerate(sentences):
        first_index.setdefault(text_key(sentence), index)
    enrollment_shape = None
    if enrollment is not None:
        info = sf.info(str(enrollment))
        enrollment_shape = (info.frames, info.samplerate)
    roles, indices = [], []
    for row in utterances.itertuples():
        matched = [first_index[k] for k in (text_key(row.original_text), text_key(row.normalized_text))
                   if k in first_index]
        shape = None
        if enrollment_shape is not None:
            info = sf.info(row.wav)
            shape = (info.frames, info.samplerate)
        if shape is not None and shape == enrollment_shape:
            roles.append("enrollment")
            indices.append(-1)
        elif matched:
            roles.append("sentence")
            indices.append(min(matched))
        else:
            roles.append("held_out")
            indices.append(-1)
    table = utterances.copy()
    table["role"], table["sentence_index"] = roles, indices
    return table


def choose_test_utterances(held_out: list[str], count: int, seed: list[int]) -> list[str]:
    """`count` utterance ids drawn (seeded) from `held_out`, in id order; all of them if fewer."""
    held_out = sorted(held_out)
    if len(held_out) <= count:
        return held_out
    rng = np.random.default_rng(seed)
    return sorted(held_out[i] for i in rng.choice(len(held_out), count, replace=False))
