"""Prepare one real or virtual speaker's folder from the challenge release, LibriTTS, MUSAN or own files.

Writes, into --out-dir (16 kHz mono float32 audio, resampled once):
  enrollment.wav   the enrollment clip (the challenge's is 24 kHz)
  sentences.txt    the TTS text: the speaker's 50 challenge sentences, then the 200 additional
                   (LJSpeech) sentences of synth_sentences_additional.txt; or --sentences
  noises/          the noise set: the speaker's 5 MUSAN sound-bible recordings named in
                   spk_noise_set.json; or every audio file of --noise-dir
  test/            the test set. With clean recordings (--test-clean, or the speaker's LibriTTS
                   test-clean utterances that read none of its sentences and are not the
                   enrollment clip): N of them (seeded) mixed with each noise at an SNR drawn
                   from --test-snrs-db, with clean references. The challenge's own clean
                   references are not public, so for its real speakers this test set is a
                   reconstruction of the challenge's recipe, not its test set. Without clean
                   recordings: the mixtures of --test-mixtures or the challenge's 45 test
                   mixtures, without references.
  speaker.json     where everything came from, and the LibriTTS utterances the test set uses
                   (prepare_gt leaves them out of the real speech).

    python -m workflow_scripts.prepare_speaker --speaker F0 --group real \
        --challenge-dir resources/genda_challenge --challenge-id F0 --musan-dir resources/musan \
        --libritts-dir resources/libritts_test_clean --libritts-id 237 --out-dir data/speakers/F0

Every input is read and checked before anything is written; the outputs appear only when complete.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from workflow_scripts.files import corpora
from workflow_scripts.files.audio import (
    SAMPLE_RATE,
    AudioError,
    atomic_write_text,
    audio_files,
    read_checked,
    staging_dir,
    write_audio,
)
from workflow_scripts.files.folders import write_noise_folder, write_test_folder
from workflow_scripts.files.sentences import read_sentence_file, write_sentence_file
from workflow_scripts.runtime.logs import setup_logging
from workflow_scripts.world.real_speakers import libritts_test_set, speaker_seed
from workflow_scripts.world.testsets import given_test_set, mixed_test_set

log = logging.getLogger("prepare_speaker")

OUTPUTS = ("enrollment.wav", "sentences.txt", "noises", "test", "speaker.json")
NOISE_KIND = "sound-bible"  # the MUSAN subset of the challenge's noise sets


def need(value, flag: str, alternative: str):
    if value is None:
        raise ValueError(f"{flag} or {alternative} is required")
    return value


def enrollment_path(args) -> Path:
    if args.enrollment:
        return args.enrollment
    need(args.challenge_dir, "--enrollment", "--challenge-dir with --challenge-id")
    return corpora.challenge_enrollment(args.challenge_dir, args.challenge_id)


def sentences(args) -> tuple[list[str], dict]:
    if args.sentences:
        return read_sentence_file(args.sentences), {"source": str(args.sentences)}
    need(args.challenge_dir, "--sentences", "--challenge-dir with --challenge-id")
    own = corpora.challenge_sentences(args.challenge_dir, args.challenge_id)
    additional = corpora.challenge_sentences(args.challenge_dir, args.challenge_id, additional=True)
    return own + additional, {"source": "challenge", "own": len(own), "additional": len(additional)}


def noise_source(path: Path, kind: str) -> dict:
    """A noise of the set: named in its folder by the recording's name, its source kept."""
    return {"name": path.stem, "kind": kind, "source": str(path), "params": {"source": str(path)}}


def noise_sources(args) -> list[dict]:
    if args.noise_dir:
        return [noise_source(p, "file") for p in audio_files(args.noise_dir, "noise")]
    need(args.challenge_dir, "--noise-dir", "--challenge-dir with --challenge-id")
    need(args.musan_dir, "--noise-dir", "--musan-dir (the challenge's noise sets are MUSAN recordings)")
    folder = corpora.musan_noise_dir(args.musan_dir, NOISE_KIND)
    names = corpora.challenge_noise_names(args.challenge_dir, args.challenge_id)
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: noise recordings of speaker {args.challenge_id} not found: {missing}")
    return [noise_source(folder / name, f"musan-{NOISE_KIND}") for name in names]


def clean_test_sources(args, sentence_list: list[str], enrollment: Path) -> tuple[list[dict], dict] | None:
    """The clean recordings the test set mixes, or None when the test set is made of given mixtures."""
    count = args.num_test_utterances
    if args.test_clean:
        files = audio_files(args.test_clean, "clean test")[:count]
        if len(files) < count:
            log.warning("%s: %d clean recordings, fewer than %d: using all", args.test_clean, len(files), count)
        sources = [{"id": p.stem, "source": str(p), "text": transcript_beside(p)} for p in files]
        return sources, {"kind": "clean recordings", "source": str(args.test_clean)}
    if args.libritts_dir:
        need(args.libritts_id, "--libritts-id", "no LibriTTS folder")
        return libritts_test_set(args.libritts_dir, args.libritts_id, sentence_list, enrollment, count,
                                 speaker_seed(args.seed, args.speaker))
    return None


def transcript_beside(recording: Path) -> str:
    """The text of a same-stem .txt beside a recording ("" when there is none)."""
    text_file = recording.with_suffix(".txt")
    return " ".join(text_file.read_text(encoding="utf-8").split()) if text_file.is_file() else ""


def mixture_sources(args) -> tuple[list[Path], dict]:
    if args.test_mixtures:
        return audio_files(args.test_mixtures, "test mixtures"), {
            "kind": "mixtures without clean references", "source": str(args.test_mixtures)}
    need(args.challenge_dir, "--test-clean, --test-mixtures, --libritts-dir", "--challenge-dir")
    return corpora.challenge_mixtures(args.challenge_dir, args.challenge_id), {
        "kind": "the challenge's test mixtures (no clean references are public)"}


def prepare(args) -> dict:
    """Read and check every input, then write the outputs into a staging folder; returns the record."""
    enrollment = enrollment_path(args)
    enrollment_audio = read_checked(enrollment, "enrollment clip")
    duration_s = enrollment_audio.size / SAMPLE_RATE
    if duration_s < args.min_enrollment_s:
        raise AudioError(
            f"{enrollment}: enrollment clip is {duration_s:.2f} s long, shorter than the"
            f" {args.min_enrollment_s:g} s of config enrollment.min_seconds"
        )
    sentence_list, sentence_record = sentences(args)
    noises = noise_sources(args)
    for noise in tqdm(noises, desc="noises", mininterval=5.0):
        noise["audio"] = read_checked(noise["source"], "noise")
    clean = clean_test_sources(args, sentence_list, enrollment)
    if clean is not None:
        clean_sources, test_record = clean
        clean_audio = [read_checked(c["source"], "clean test recording") for c in
                       tqdm(clean_sources, desc="clean test", mininterval=5.0)]
    else:
        mixtures, test_record = mixture_sources(args)

    record = {
        "speaker": args.speaker,
        "group": args.group,
        "challenge_id": args.challenge_id,
        "libritts_id": args.libritts_id,
        "enrollment": {"source": str(enrollment), "duration_s": round(enrollment_audio.size / SAMPLE_RATE, 3)},
        "sentences": {**sentence_record, "count": len(sentence_list)},
        "noises": [n["source"] for n in noises],
        "test": test_record,
    }
    with staging_dir(args.out_dir) as staging:
        write_audio(staging / "enrollment.wav", enrollment_audio)
        write_sentence_file(staging / "sentences.txt", sentence_list)
        noise_table = write_noise_folder(staging / "noises", f"{args.speaker}_", noises)
        if clean is not None:
            rng = np.random.default_rng(speaker_seed(args.seed, args.speaker) + [1])
            mixed = mixed_test_set(args.speaker, clean_audio, noises, list(noise_table.noise_id),
                                   args.test_snrs_db, rng)
            sources = [c for c in clean_sources for _ in noises]  # mixed utterance by utterance
            write_test_folder(staging / "test", ({**row, "clean_source": c["id"], "text": c["text"]}
                                                 for row, c in zip(mixed, sources)))
        else:
            write_test_folder(staging / "test", given_test_set(args.speaker, mixtures))
        record["test"]["mixtures"] = len(clean_audio) * len(noises) if clean is not None else len(mixtures)
        atomic_write_text(staging / "speaker.json", json.dumps(record, indent=2) + "\n")
        install(staging, args.out_dir)
    return record


def install(staging: Path, out_dir: Path) -> None:
    """Move the staged outputs into out_dir, each by one rename (out_dir may hold gt/ already)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:
        target = out_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(staging / name, target)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speaker", required=True, help="speaker id (names the files)")
    parser.add_argument("--group", choices=["real", "virtual"], required=True)
    parser.add_argument("--out-dir", type=Path, required=True)
    release = parser.add_argument_group("resources")
    release.add_argument("--challenge-dir", type=Path, help="the GenDA 2025 challenge release")
    release.add_argument("--challenge-id", help="the speaker's challenge id (F0, ..., VirtualM4)")
    release.add_argument("--musan-dir", type=Path, help="MUSAN (noise/sound-bible) for the challenge's noise sets")
    release.add_argument("--libritts-dir", type=Path, help="LibriTTS test-clean, for a clean-reference test set")
    release.add_argument("--libritts-id", help="the speaker's LibriTTS id")
    own = parser.add_argument_group("own files (override the resources)")
    own.add_argument("--enrollment", type=Path, help="enrollment clip")
    own.add_argument("--sentences", type=Path, help="sentences file, one per line")
    own.add_argument("--noise-dir", type=Path, help="folder of noise recordings")
    own.add_argument("--test-clean", type=Path, help="folder of clean recordings for the test set")
    own.add_argument("--test-mixtures", type=Path, help="folder of noisy recordings without references")
    own.add_argument("--min-enrollment-s", type=float, default=2.0,
                     help="refuse an enrollment clip shorter than this (config enrollment.min_seconds)")
    test = parser.add_argument_group("test set")
    test.add_argument("--num-test-utterances", type=int, default=9)
    test.add_argument("--test-snrs-db", type=float, nargs="+", default=[-2.5, 0.0, 2.5])
    test.add_argument("--seed", type=int, default=0, help="with the speaker id, fixes the test set")
    args = parser.parse_args(argv)
    if args.challenge_dir and not args.challenge_id:
        parser.error("--challenge-dir needs --challenge-id")
    if args.num_test_utterances < 1:
        parser.error(f"--num-test-utterances must be >= 1, got {args.num_test_utterances}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    record = prepare(args)
    log.info("%s: %s; %d sentences, %d noises, test set: %s (%d mixtures)", args.speaker, args.out_dir,
             record["sentences"]["count"], len(record["noises"]), record["test"]["kind"],
             record["test"]["mixtures"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
