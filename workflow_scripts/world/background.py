"""The demo's background pool: other people's speech and generic noises, for pre-training.

Each background speaker has a random voice and recording chain (speaker i
starts from base voice i mod the number of base voices, so the pool is
balanced); the noises come from the same families as the target speakers'
noises, with their own random parameters.
"""

from __future__ import annotations

import logging
import multiprocessing
from pathlib import Path

import numpy as np
from tqdm import tqdm

from workflow_scripts.files.audio import atomic_dir
from workflow_scripts.files.folders import write_noise_folder, write_speech_folder
from workflow_scripts.world.noises import draw_noise_set
from workflow_scripts.world.voices import VoiceParams, draw_recording, random_voice, record, speak

log = logging.getLogger(__name__)


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
    """Write out_dir/speech (a speech folder with a `speaker` column) and out_dir/noises."""
    jobs = draw_jobs(seed, num_speakers, utterances_per_speaker, pool, base_voices)
    args = [(j["text"], j["voice"], j["recording"], j["gain_db"]) for j in jobs]
    with atomic_dir(out_dir) as tmp:
        progress = dict(total=len(args), desc="background speech")
        if workers > 1:
            with multiprocessing.get_context("fork").Pool(workers) as worker_pool:
                audios = list(tqdm(worker_pool.imap(render_utterance, args, chunksize=4), **progress))
        else:
            audios = [render_utterance(a) for a in tqdm(args, **progress)]
        write_speech_folder(tmp / "speech", (
            {"utt_id": f"{job['speaker']}_{i:04d}", "text": job["text"], "audio": audio,
             "speaker": job["speaker"]}
            for i, (job, audio) in enumerate(zip(jobs, audios))
        ))
        noise_set = draw_noise_set(
            np.random.default_rng([seed, num_speakers, 1]),
            num_noises,
            noise_seconds,
            pool,
            voices=base_voices,
        )
        write_noise_folder(tmp / "noises", "bg_", noise_set)
