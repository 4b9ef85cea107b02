"""The folder formats that steps hand to each other: their columns, readers and writers.

- speech folder: `manifest.csv` (utt_id, path, text, duration_s) and the wavs it names; a synthesized
  one also `failures.csv` (utt_index, text, reason), the sentences it could not render;
- noise folder: `noises.csv` (noise_id, path, kind) and the wavs it names;
- test folder: `test.csv` (mixture_id, mixture, clean, noise_id, snr_db, and optionally text);
  `clean` is empty for a mixture without a clean reference, `text` (what its speaker says)
  where that is not known.

Paths in a table are relative to its folder; readers add absolute paths. A table may carry
further columns after these (e.g. a speech folder's `speaker`, a noise's `duration_s` and
`params`); writers put the format's columns first.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from workflow_scripts.files.audio import SAMPLE_RATE, AudioError, read_audio, write_audio

SPEECH_COLUMNS = ("utt_id", "path", "text", "duration_s")
NOISE_COLUMNS = ("noise_id", "path", "kind")
TEST_COLUMNS = ("mixture_id", "mixture", "clean", "noise_id", "snr_db")
FAILURE_COLUMNS = ("utt_index", "text", "reason")  # failures.csv of a synthesized speech folder
DURATION_DECIMALS = 4  # of `duration_s`


class DataError(ValueError):
    """A speech or noise folder (or the data drawn from it) that cannot be used."""


# ---- readers ------------------------------------------------------------------------


def _read_csv(csv_path: Path, columns: tuple[str, ...], error: type[Exception],
              not_found: str) -> pd.DataFrame:
    """The table, checked to exist, to have the format's columns and to have rows."""
    if not csv_path.is_file():
        raise error(f"{csv_path}: {not_found}")
    table = pd.read_csv(csv_path, keep_default_na=False)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise error(f"{csv_path}: missing columns {missing}")
    if table.empty:
        raise error(f"{csv_path}: no rows")
    return table


def _read_table(csv_path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    table = _read_csv(csv_path, columns, DataError, "file not found")
    absent = [p for p in table["path"] if not (csv_path.parent / p).is_file()]
    if absent:
        raise DataError(f"{csv_path}: {len(absent)} listed files not found, e.g. {absent[0]}")
    table["wav"] = [str(csv_path.parent / p) for p in table["path"]]
    return table


def read_speech_folder(folder: str | Path) -> pd.DataFrame:
    """The manifest of a speech folder, in row order, with absolute `wav` paths."""
    return _read_table(Path(folder) / "manifest.csv", SPEECH_COLUMNS)


def read_speech_signals(folder: str | Path, max_utterances: int = 0) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """The manifest of a speech folder (its first `max_utterances` rows, 0 for all) and their audio."""
    manifest = read_speech_folder(folder)
    if max_utterances > 0:
        manifest = manifest.head(max_utterances)
    return manifest, [read_audio(wav) for wav in manifest.wav]


def read_noise_table(folder: str | Path) -> pd.DataFrame:
    """The table of a noise folder, with absolute `wav` paths."""
    return _read_table(Path(folder) / "noises.csv", NOISE_COLUMNS)


def read_test_folder(folder: str | Path) -> pd.DataFrame:
    """test.csv with absolute `mixture_wav` and `clean_wav` (empty where a mixture has no clean
    reference); all files named must exist."""
    csv_path = Path(folder) / "test.csv"
    table = _read_csv(csv_path, TEST_COLUMNS, AudioError, "test table not found")
    empty = [str(m) for m, p in zip(table.mixture_id, table.mixture) if not str(p).strip()]
    if empty:
        raise AudioError(f"{csv_path}: {len(empty)} rows name no mixture file, e.g. {empty[0]}")
    for column in ("mixture", "clean"):
        table[f"{column}_wav"] = [str(csv_path.parent / p) if str(p).strip() else "" for p in table[column]]
        absent = [p for p in table[f"{column}_wav"] if p and not Path(p).is_file()]
        if absent:
            raise AudioError(f"{csv_path}: {len(absent)} {column} files not found, e.g. {absent[0]}")
    table["text"] = table["text"].astype(str) if "text" in table.columns else ""
    return table


def read_test_signals(table: pd.DataFrame) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Every mixture of a test table (read_test_folder) and its clean reference (None where it
    has none), checked to be of equal length."""
    mixtures, cleans = [], []
    for row in table.itertuples():
        mixture = read_audio(row.mixture_wav)
        clean = read_audio(row.clean_wav) if row.clean_wav else None
        if clean is not None and clean.size != mixture.size:
            raise AudioError(
                f"{row.mixture_wav}: {mixture.size} samples, but clean {row.clean_wav} has {clean.size}"
            )
        mixtures.append(mixture)
        cleans.append(clean)
    return mixtures, cleans


# ---- writers ------------------------------------------------------------------------


def duration_s(audio: np.ndarray, decimals: int = DURATION_DECIMALS) -> float:
    """The `duration_s` of a 16 kHz recording, as the tables give it."""
    return round(audio.size / SAMPLE_RATE, decimals)


def _write_csv(csv_path: Path, table: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """The table with the format's columns first, written to `csv_path`."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{csv_path}: the table lacks the columns {missing}")
    table = table[[*columns, *(c for c in table.columns if c not in columns)]]
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(csv_path, index=False)
    return table


def write_speech_table(folder: Path, table: pd.DataFrame) -> pd.DataFrame:
    """manifest.csv of a speech folder whose audio files are already where `path` says."""
    return _write_csv(Path(folder) / "manifest.csv", table, SPEECH_COLUMNS)


def write_failure_table(folder: Path, failures: Iterable[dict]) -> pd.DataFrame:
    """failures.csv of a synthesized speech folder: the sentences that could not be rendered
    (utt_index, text, reason); written even when empty."""
    return _write_csv(Path(folder) / "failures.csv", pd.DataFrame(list(failures), columns=FAILURE_COLUMNS),
                      FAILURE_COLUMNS)


def write_noise_table(folder: Path, table: pd.DataFrame) -> pd.DataFrame:
    """noises.csv of a noise folder whose audio files are already where `path` says."""
    return _write_csv(Path(folder) / "noises.csv", table, NOISE_COLUMNS)


def write_speech_folder(folder: Path, rows: Iterable[dict], duration_decimals: int = DURATION_DECIMALS,
                        extra_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """wavs/{utt_id}.wav and manifest.csv, rows in the given order; each row has utt_id, audio,
    text and any further columns (`extra_columns` name them for a folder that may be empty)."""
    records = []
    for row in rows:
        path = f"wavs/{row['utt_id']}.wav"
        write_audio(folder / path, row["audio"])
        extra = {k: v for k, v in row.items() if k not in ("utt_id", "audio", "text")}
        records.append({"utt_id": row["utt_id"], "path": path, "text": row["text"],
                        "duration_s": duration_s(row["audio"], duration_decimals), **extra})
    table = pd.DataFrame(records) if records else pd.DataFrame(columns=[*SPEECH_COLUMNS, *extra_columns])
    return write_speech_table(folder, table)


def write_noise_folder(folder: Path, prefix: str, noises: Iterable[dict]) -> pd.DataFrame:
    """{noise_id}.wav and noises.csv; each noise has name, kind, params (a dict, kept as JSON)
    and audio. Noise i is {prefix}noise{i:02d}_{name}.

    A noise set may list the same recording twice (as the challenge's does): each
    entry is its own noise of the set, numbered by position.
    """
    rows = []
    for index, noise in enumerate(noises):
        noise_id = f"{prefix}noise{index:02d}_{noise['name']}"
        write_audio(folder / f"{noise_id}.wav", noise["audio"])
        rows.append({"noise_id": noise_id, "path": f"{noise_id}.wav", "kind": noise["kind"],
                     "duration_s": duration_s(noise["audio"]),
                     "params": json.dumps(noise["params"], sort_keys=True)})
    return write_noise_table(folder, pd.DataFrame(rows))


def write_test_folder(folder: Path, rows: Iterable[dict]) -> pd.DataFrame:
    """mixtures/{mixture_id}.wav, clean/{mixture_id}.wav and test.csv, rows in the given order.

    Each row has mixture_id, mixture (audio), clean (audio, or None for a mixture without a
    clean reference: its `clean` is left empty), noise_id, snr_db and any further columns
    (`text`: what the speaker says, where it is known).
    """
    records = []
    for row in rows:
        mixture_id = row["mixture_id"]
        record = {"mixture_id": mixture_id, "mixture": f"mixtures/{mixture_id}.wav", "clean": ""}
        write_audio(folder / record["mixture"], row["mixture"])
        if row["clean"] is not None:
            record["clean"] = f"clean/{mixture_id}.wav"
            write_audio(folder / record["clean"], row["clean"])
        records.append({**record, **{k: v for k, v in row.items() if k not in record}})
    return _write_csv(folder / "test.csv", pd.DataFrame(records), TEST_COLUMNS)
