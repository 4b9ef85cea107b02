"""Build the demo's background pool: other people's speech and generic noises, for pre-training.

Each background speaker has a random voice and recording chain (speaker i
starts from base voice i mod the number of base voices, so the pool is
balanced); the noises come from the same families as the target speakers'
noises, with their own random parameters.

    python -m workflow_scripts.build_background --seed 1000 --num-speakers 12 \
        --utterances-per-speaker 16 --num-noises 16 \
        --sentences workflow_scripts/data/sentences.txt --out-dir data/background
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from workflow_scripts.files.audio import atomic_dir
from workflow_scripts.build_world import read_sentence_pool, write_noise_folder, write_speech_folder
from workflow_scripts.runtime.logs import setup_logging
from workflow_scripts.world.noises import draw_noise_set
from workflow_scripts.world.voices import VoiceParams, draw_recording, random_voice, record, speak

log = logging.getLogger("build_background")


def render_utterance(job: tuple[str, dict, dict, float]) -> np.ndarray:
    """One recording: (text, voice dict, recording chain, gain_db) -> 16 kHz audio."""
    text, voice, recording, gain_db = job
    return record(speak(text, VoiceParams.from_dict(voice)), recording, gain_db)


def draw_jobs(
    seed: int, num_speakers: int, utterances_per_speaker: int, pool: list[str], base_voices: list[str]
) -> list[dict]:
    """Who says what, in the order of use: speakers interleaved, so any prefix covers many voices."""
    per_speaker = []
    for index in range(num_speakers):
        rng = np.random.default_rng([seed, index])
        speaker = f"bg{index:02d}"
        voice = random_voice(rng, base_voices, base_voice=base_voices[index % len(base_voices)])
        recording = draw_recording(rng)
        log.info("%s: %s", speaker, voice)
        texts = [pool[i] for i in rng.choice(len(pool), utterances_per_speaker, replace=False)]
        gains_db = rng.normal(0.0, recording["level_jitter_db"], utterances_per_speaker)
        per_speaker.append(
            [
                {
                    "speaker": speaker,
                    "text": text,
                    "voice": voice.to_dict(),
                    "recording": recording,
                    "gain_db": float(gain),
                }
                for text, gain in zip(texts, gains_db)
            ]
        )
    return [utts[i] for i in range(utterances_per_speaker) for utts in per_speaker]


def build_background(
    seed: int,
    num_speakers: int,
    utterances_per_speaker: int,
    num_noises: int,
    pool: list[str],
    base_voices: list[str],
    out_dir: Path,
    noise_seconds: float = 10.0,
    workers: int = 1,
) -> None:
    jobs = draw_jobs(seed, num_speakers, utterances_per_speaker, pool, base_voices)
    args = [(j["text"], j["voice"], j["recording"], j["gain_db"]) for j in jobs]
    with atomic_dir(out_dir) as tmp:
        progress = dict(total=len(args), desc="background speech")
        if workers > 1:
            with multiprocessing.get_context("fork").Pool(workers) as worker_pool:
                audios = list(tqdm(worker_pool.imap(render_utterance, args, chunksize=4), **progress))
        else:
            audios = [render_utterance(a) for a in tqdm(args, **progress)]
        write_speech_folder(
            tmp / "speech",
            [f"{j['speaker']}_{i:04d}" for i, j in enumerate(jobs)],
            [j["text"] for j in jobs],
            audios,
            extra={"speaker": [j["speaker"] for j in jobs]},
        )
        noise_set = draw_noise_set(
            np.random.default_rng([seed, num_speakers, 1]),
            num_noises,
            noise_seconds,
            pool,
            voices=base_voices,
        )
        write_noise_folder(tmp / "noises", noise_set, prefix="bg_")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--num-speakers", type=int, default=12)
    parser.add_argument("--utterances-per-speaker", type=int, default=16)
    parser.add_argument("--num-noises", type=int, default=16)
    parser.add_argument("--sentences", type=Path, required=True, help="sentence pool, one per line")
    parser.add_argument("--base-voices", nargs="+", default=["kal16", "awb", "rms", "slt"])
    parser.add_argument("--noise-seconds", type=float, default=10.0, help="length of each noise (>= 4)")
    parser.add_argument("--workers", type=int, default=1, help="processes rendering speech")
    parser.add_argument("--out-dir", type=Path, required=True, help="gets speech/ and noises/")
    args = parser.parse_args(argv)
    setup_logging()
    for name in ("num_speakers", "utterances_per_speaker", "num_noises", "workers"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.noise_seconds < 4.0:
        raise ValueError(f"--noise-seconds must be >= 4 (noise folder format), got {args.noise_seconds}")
    pool = read_sentence_pool(args.sentences)
    if len(pool) < args.utterances_per_speaker:
        raise ValueError(
            f"{args.sentences}: {len(pool)} sentences, fewer than --utterances-per-speaker "
            f"{args.utterances_per_speaker}"
        )
    build_background(
        args.seed,
        args.num_speakers,
        args.utterances_per_speaker,
        args.num_noises,
        pool,
        args.base_voices,
        args.out_dir,
        args.noise_seconds,
        args.workers,
    )
    log.info("wrote %s/speech and %s/noises", args.out_dir, args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
