"""A speaker's own files are checked when the sheet is read: each bad file stops `snakemake -n`
before any job, with the sheet's row, the user's path and the config key in the message; good
files pass. (The jobs' own checks are in test_bad_input.py and test_data.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_workflow import load_config, make_workdir, snakemake

from workflow_scripts.files.audio import SAMPLE_RATE
from workflow_scripts.files.sentences import MAX_SENTENCE_CHARS

COLUMNS = ["enrollment", "sentences", "noises", "test_clean", "gt"]


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32)


def audio_folder(folder: Path, count: int, seconds: float = 1.0) -> Path:
    folder.mkdir(parents=True)
    for i in range(count):
        sf.write(folder / f"u{i:03d}.wav", tone(seconds), SAMPLE_RATE, subtype="PCM_16")
    return folder


def own_files(root: Path, sentences_needed: int, gt_needed: int) -> dict[str, Path]:
    """A speaker's own files, good enough for the config."""
    root.mkdir()
    files = {"enrollment": root / "me.wav", "sentences": root / "me.txt"}
    sf.write(files["enrollment"], tone(3.0), SAMPLE_RATE, subtype="PCM_16")
    files["sentences"].write_text("".join(f"Sentence number {i}.\n" for i in range(sentences_needed)))
    files["noises"] = audio_folder(root / "noises", 2)
    files["test_clean"] = audio_folder(root / "clean", 2)
    files["gt"] = audio_folder(root / "recordings", gt_needed)
    return files


def largest(config: dict) -> int:
    return max(size["val"] + size["train"] for size in config["data_sizes"].values())


def sheet(files: dict[str, Path], columns=COLUMNS) -> str:
    return "\t".join(["speaker", "group", *columns]) + "\n" + "\t".join(
        ["me", "real", *(str(files[c]) for c in columns)]) + "\n"


def workfolder(tmp_path: Path, config: dict, files: dict[str, Path]) -> Path:
    (tmp_path / "work").mkdir()
    return make_workdir(tmp_path / "work", config, sheet(files))


@pytest.fixture
def config() -> dict:
    """The demo config (worldclone and gt at 8utt and 32utt) without the demo speakers (and so
    without its crossed pairs, which name them)."""
    return dict(load_config("config.yaml"), cross=[])


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def too_short(files):
    sf.write(files["enrollment"], tone(1.0), SAMPLE_RATE, subtype="PCM_16")
    return [str(files["enrollment"]), "1.00 s long", "enrollment.min_seconds"]


def truncated_enrollment(files):
    truncate(files["enrollment"])
    return [str(files["enrollment"]), "truncated WAV file"]


def not_audio(files):
    files["enrollment"].write_text("not audio\n")
    return [str(files["enrollment"]), "cannot read audio"]


def few_sentences(files):
    files["sentences"].write_text("Only one sentence.\nAnd a second.\n")
    return [str(files["sentences"]), "2 sentences, fewer than the 36", "data size 32utt of worldclone",
            "config data_sizes.32utt: val 4 + train 32"]


def long_sentence(files):
    lines = files["sentences"].read_text().splitlines()
    lines[1] = "word " * (MAX_SENTENCE_CHARS // 5 + 1)
    files["sentences"].write_text("\n".join(lines) + "\n")
    return [str(files["sentences"]), "line 2 has", f"more than the maximum of {MAX_SENTENCE_CHARS}"]


def few_recordings(files):
    for path in sorted(files["gt"].iterdir())[10:]:
        path.unlink()
    return [str(files["gt"]), "10 recordings, fewer than the 36", "data size 32utt of gt",
            "config data_sizes.32utt"]


def truncated_recording(files):
    bad = sorted(files["gt"].iterdir())[3]
    truncate(bad)
    return [str(bad), "truncated WAV file"]


def empty_noises(files):
    for path in files["noises"].iterdir():
        path.unlink()
    return [str(files["noises"]), "no audio files", "noise folder"]


def unreadable_clean(files):
    bad = files["test_clean"] / "u001.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00garbage")
    return [str(bad), "cannot read audio"]


CASES = {
    "enrollment-too-short": ("enrollment", too_short),
    "enrollment-truncated": ("enrollment", truncated_enrollment),
    "enrollment-not-audio": ("enrollment", not_audio),
    "sentences-too-few": ("sentences", few_sentences),
    "sentence-too-long": ("sentences", long_sentence),
    "gt-too-few": ("gt", few_recordings),
    "gt-truncated": ("gt", truncated_recording),
    "noises-empty": ("noises", empty_noises),
    "test-clean-unreadable": ("test_clean", unreadable_clean),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_own_file_stops_the_dry_run_before_any_job(tmp_path, config, case):
    column, spoil = CASES[case]
    files = own_files(tmp_path / "mine", largest(config), largest(config))
    messages = spoil(files)
    workdir = workfolder(tmp_path, config, files)
    result = snakemake(workdir, "-n", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{workdir / 'speakers.tsv'}: row 1 (speaker me): `{column}`:" in output, output[-3000:]
    for message in messages:
        assert message in output, output[-3000:]
    assert "Job stats" not in output  # no job planned, none run
    assert not (workdir / "results").exists() and not (workdir / "data").exists()


def test_good_own_files_pass_the_dry_run(tmp_path, config):
    files = own_files(tmp_path / "mine", largest(config), largest(config))
    workdir = workfolder(tmp_path, config, files)
    result = snakemake(workdir, "-n")
    assert "prepare_speaker" in result.stdout and "prepare_gt" in result.stdout


def test_sizes_come_from_the_config(tmp_path, config):
    """A config of smaller sizes asks fewer sentences and recordings of the same files."""
    config = dict(config, data_sizes={"4utt": {"train": 3, "val": 1}})
    files = own_files(tmp_path / "mine", 4, 4)
    workdir = workfolder(tmp_path, config, files)
    snakemake(workdir, "-n")
    files["sentences"].write_text("One.\nTwo.\nThree.\n")
    result = snakemake(workdir, "-n", check=False)
    assert result.returncode != 0
    assert "3 sentences, fewer than the 4" in result.stderr + result.stdout
    assert "config data_sizes.4utt: val 1 + train 3" in result.stderr + result.stdout
