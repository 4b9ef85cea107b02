"""The folder formats that steps hand to each other: their columns and readers.

- speech folder: `manifest.csv` (utt_id, path, text, duration_s) and the wavs it names;
- noise folder: `noises.csv` (noise_id, path, kind) and the wavs it names;
- test folder: `test.csv` (mixture_id, mixture, clean, noise_id, snr_db); `clean` is empty
  for a mixture without a clean reference.

Paths in a table are relative to its folder; readers add absolute paths.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from workflow_scripts.files.audio import AudioError

SPEECH_COLUMNS = ("utt_id", "path", "text", "duration_s")
NOISE_COLUMNS = ("noise_id", "path", "kind")
TEST_COLUMNS = ("mixture_id", "mixture", "clean", "noise_id", "snr_db")


class DataError(ValueError):
    """A speech or noise folder (or the data drawn from it) that cannot be used."""


def _read_table(csv_path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: file not found")
    table = pd.read_csv(csv_path, keep_default_na=False)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(f"{csv_path}: missing columns {missing}")
    if table.empty:
        raise DataError(f"{csv_path}: no rows")
    absent = [p for p in table["path"] if not (csv_path.parent / p).is_file()]
    if absent:
        raise DataError(f"{csv_path}: {len(absent)} listed files not found, e.g. {absent[0]}")
    table["wav"] = [str(csv_path.parent / p) for p in table["path"]]
    return table


def read_speech_folder(folder: str | Path) -> pd.DataFrame:
    """The manifest of a speech folder, in row order, with absolute `wav` paths."""
    return _read_table(Path(folder) / "manifest.csv", SPEECH_COLUMNS)


def read_noise_table(folder: str | Path) -> pd.DataFrame:
    """The table of a noise folder, with absolute `wav` paths."""
    return _read_table(Path(folder) / "noises.csv", NOISE_COLUMNS)


def read_test_folder(folder: str | Path) -> pd.DataFrame:
    """test.csv with absolute `mixture_wav` and `clean_wav` (empty where a mixture has no clean
    reference); all files named must exist."""
    csv_path = Path(folder) / "test.csv"
    if not csv_path.is_file():
        raise AudioError(f"{csv_path}: test table not found")
    table = pd.read_csv(csv_path, keep_default_na=False)
    missing = [c for c in TEST_COLUMNS if c not in table.columns]
    if missing:
        raise AudioError(f"{csv_path}: missing columns {missing}")
    if table.empty:
        raise AudioError(f"{csv_path}: no rows")
    empty = [str(m) for m, p in zip(table.mixture_id, table.mixture) if not str(p).strip()]
    if empty:
        raise AudioError(f"{csv_path}: {len(empty)} rows name no mixture file, e.g. {empty[0]}")
    for column in ("mixture", "clean"):
        table[f"{column}_wav"] = [str(csv_path.parent / p) if str(p).strip() else "" for p in table[column]]
        absent = [p for p in table[f"{column}_wav"] if p and not Path(p).is_file()]
        if absent:
            raise AudioError(f"{csv_path}: {len(absent)} {column} files not found, e.g. {absent[0]}")
    return table
