"""Prepare the generalist's pre-training pool: LibriSpeech speech and MUSAN free-sound noises.

Writes, into --out-dir, the folders pretrain reads:
  speech/      manifest.csv of every utterance of the LibriSpeech subsets (--librispeech-dirs,
               in that order, each by speaker, chapter and utterance), less the speakers of
               --held-out-speakers, with a `speaker` column. LibriSpeech is 16 kHz mono already,
               so `path` points at the extracted .flac files where they are (relative paths);
               a file at another rate or with more channels is converted into speech/wavs/.
               pretrain validates on the last rows, i.e. on the last speakers.
  noises/      noises.csv of MUSAN noise/free-sound, less the last --num-val-noises files
  val_noises/  noises.csv of those last --num-val-noises files, for validation

    python -m workflow_scripts.prepare_pretrain_pool \
        --librispeech-dirs resources/librispeech_train_clean_100 resources/librispeech_train_clean_360 \
        --musan-dir resources/musan --held-out-speakers 237 2961 --num-val-noises 60 \
        --out-dir data/pretrain_pool
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
from pathlib import Path

import pandas as pd
import soundfile as sf
from tqdm import tqdm

from workflow_scripts.files import corpora
from workflow_scripts.files.audio import SAMPLE_RATE, atomic_dir, read_audio, write_audio
from workflow_scripts.files.folders import (
    DURATION_DECIMALS,
    duration_s,
    write_noise_table,
    write_speech_table,
)
from workflow_scripts.runtime.logs import setup_logging

log = logging.getLogger("prepare_pretrain_pool")
FREE_SOUND = "free-sound"


def audio_shape(path: str) -> tuple[int, int, int]:
    """(sample rate, channels, frames) from the file header."""
    try:
        info = sf.info(path)
    except Exception as exc:  # soundfile raises several types
        raise ValueError(f"{path}: cannot read audio header ({exc})") from exc
    return info.samplerate, info.channels, info.frames


def shapes(paths: list[str], workers: int) -> list[tuple[int, int, int]]:
    progress = {"total": len(paths), "desc": "audio headers", "mininterval": 5.0}
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            return list(tqdm(pool.imap(audio_shape, paths, chunksize=256), **progress))
    return [audio_shape(p) for p in tqdm(paths, **progress)]


def in_place_or_converted(paths: list[str], folder: Path, final_folder: Path, workers: int) -> tuple[list[str], list[float]]:
    """Paths relative to `final_folder` of 16 kHz mono files where they are; other files are
    converted (resampled once) into folder/wavs/. Returns (paths, durations in seconds)."""
    relative, durations, converted = [], [], 0
    for path, (rate, channels, frames) in zip(paths, shapes(paths, workers)):
        if rate == SAMPLE_RATE and channels == 1:
            relative.append(os.path.relpath(path, final_folder))
            durations.append(round(frames / rate, DURATION_DECIMALS))
            continue
        audio = read_audio(path)
        name = f"wavs/{Path(path).stem}.wav"
        write_audio(folder / name, audio)
        relative.append(name)
        durations.append(duration_s(audio))
        converted += 1
    if converted:
        log.info("%d files converted to 16 kHz mono", converted)
    return relative, durations


def speech_table(librispeech_dirs: list[Path], held_out: set[str]) -> pd.DataFrame:
    tables = []
    for resource in librispeech_dirs:
        subset = corpora.librispeech_dir(resource)
        table = corpora.librispeech_utterances(subset)
        dropped = table.speaker.isin(held_out)
        log.info("%s: %d utterances of %d speakers; %d of held-out speakers left out", subset, len(table),
                 table.speaker.nunique(), int(dropped.sum()))
        tables.append(table[~dropped])
    return pd.concat(tables, ignore_index=True)


def noise_folder(folder: Path, final_folder: Path, files: list[Path], workers: int) -> None:
    """A noise folder of MUSAN free-sound recordings, used where they are (or converted)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths, durations = in_place_or_converted([str(p) for p in files], folder, final_folder, workers)
    write_noise_table(folder, pd.DataFrame({"noise_id": [p.stem for p in files], "path": paths,
                                            "kind": f"musan-{FREE_SOUND}", "duration_s": durations}))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--librispeech-dirs", type=Path, nargs="+", required=True, help="LibriSpeech subsets")
    parser.add_argument("--musan-dir", type=Path, required=True, help="MUSAN (noise/free-sound)")
    parser.add_argument("--held-out-speakers", nargs="*", default=[], help="speaker ids to leave out")
    parser.add_argument("--num-val-noises", type=int, default=60, help="last free-sound files, for validation")
    parser.add_argument("--workers", type=int, default=1, help="processes reading audio headers")
    parser.add_argument("--out-dir", type=Path, required=True, help="gets speech/, noises/, val_noises/")
    args = parser.parse_args(argv)
    setup_logging()
    if args.num_val_noises < 1 or args.workers < 1:
        raise ValueError("--num-val-noises and --workers must be >= 1")

    speech = speech_table(args.librispeech_dirs, {str(s) for s in args.held_out_speakers})
    noise_files = corpora.musan_noise_files(args.musan_dir, FREE_SOUND)
    if len(noise_files) <= args.num_val_noises:
        raise ValueError(
            f"{corpora.musan_noise_dir(args.musan_dir, FREE_SOUND)}: {len(noise_files)} recordings, but"
            f" --num-val-noises {args.num_val_noises} must leave some for training"
        )

    with atomic_dir(args.out_dir) as tmp:
        final = args.out_dir
        (tmp / "speech").mkdir()
        paths, durations = in_place_or_converted(list(speech.flac), tmp / "speech", final / "speech", args.workers)
        manifest = write_speech_table(tmp / "speech", pd.DataFrame({
            "utt_id": speech.utt_id, "path": paths, "text": speech.text, "duration_s": durations,
            "speaker": speech.speaker}))
        split = len(noise_files) - args.num_val_noises
        noise_folder(tmp / "noises", final / "noises", noise_files[:split], args.workers)
        noise_folder(tmp / "val_noises", final / "val_noises", noise_files[split:], args.workers)
    log.info("%s: %d utterances (%.1f h) of %d speakers; %d training and %d validation noises", args.out_dir,
             len(manifest), manifest.duration_s.sum() / 3600, manifest.speaker.nunique(), split,
             args.num_val_noises)
    return 0


if __name__ == "__main__":
    sys.exit(main())
