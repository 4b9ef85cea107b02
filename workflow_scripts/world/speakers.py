"""A target speaker of the demo world, built from a seed.

The speaker gets a secret true voice and a way of being recorded (room,
microphone, level); one enrollment clip (the only audio a TTS system may see);
their real speech of the training sentences (`gt`); noise types of their own;
and the test mixtures (each clean test utterance mixed with each noise at an
SNR drawn from a list) with clean references.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from workflow_scripts.files.audio import SAMPLE_RATE, atomic_dir, atomic_write_text, write_audio
from workflow_scripts.files.folders import (
    duration_s,
    write_noise_folder,
    write_speech_folder,
    write_test_folder,
)
from workflow_scripts.files.sentences import write_sentence_file
from workflow_scripts.world.noises import draw_noise_set
from workflow_scripts.world.testsets import mixed_test_set
from workflow_scripts.world.voices import VoiceParams, draw_recording, random_voice, record, speak

log = logging.getLogger(__name__)

PAUSE_S = (0.25, 0.6)  # silence between the sentences of the enrollment clip
ROOM_TAIL_S = 0.25  # the room adds this tail to the whole enrollment clip
ENROLLMENT_CANDIDATES = 40  # the first sentences of the shuffled pool the clip may use
# independent random streams of one speaker, so that e.g. more sentences do not change the voice
STREAMS = {"voice": 0, "recording": 1, "text": 2, "noise": 3, "test": 4, "level": 5}


def speaker_rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng([seed, STREAMS[stream]])


class Speaker:
    """A person: a true voice recorded in one way, with a small level change per recording.

    Each recording's level change is drawn from its own (role, index), so the
    test set does not change with the number of training sentences.
    """

    ROLES = {"enrollment": 0, "gt": 1, "test": 2}

    def __init__(self, voice: VoiceParams, recording: dict, seed: int) -> None:
        self.voice, self.recording, self.seed = voice, recording, seed

    def say(self, text: str, role: str, index: int) -> np.ndarray:
        """One recording of the person reading `text`."""
        return self.record(speak(text, self.voice), role, index)

    def record(self, speech: np.ndarray, role: str, index: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, STREAMS["level"], self.ROLES[role], index])
        return record(speech, self.recording, float(rng.normal(0.0, self.recording["level_jitter_db"])))


def enrollment_clip(
    speaker: Speaker, candidates: list[str], min_s: float, max_s: float, pause_rng: np.random.Generator
) -> tuple[np.ndarray, list[int]]:
    """Sentences read one after another with short pauses, min_s..max_s long.

    Takes candidates in order, skipping any that would overshoot max_s; returns
    the clip and the indices of the candidates it used.
    """
    pieces, used, length = [], [], 0
    for index, text in enumerate(candidates[:ENROLLMENT_CANDIDATES]):
        speech = speak(text, speaker.voice)
        pause = int(pause_rng.uniform(*PAUSE_S) * SAMPLE_RATE) if pieces else 0
        if (length + pause + speech.size) / SAMPLE_RATE + ROOM_TAIL_S > max_s:
            continue
        pieces += [np.zeros(pause, np.float32), speech]
        used.append(index)
        length += pause + speech.size
        if length / SAMPLE_RATE + ROOM_TAIL_S >= min_s:
            return speaker.record(np.concatenate(pieces), "enrollment", 0), used
    raise ValueError(
        f"could not build an enrollment clip of {min_s}-{max_s} s from the first "
        f"{min(len(candidates), ENROLLMENT_CANDIDATES)} sentences of the pool"
    )


def build_speaker(
    speaker_id: str,
    seed: int,
    pool: list[str],
    num_sentences: int,
    num_test_utterances: int,
    num_noises: int,
    test_snrs_db: list[float],
    enrollment_seconds: tuple[float, float],
    base_voices: list[str],
    out_dir: Path,
    noise_seconds: float = 8.0,
) -> dict:
    """Write the speaker's folder (enrollment.wav, sentences.txt, gt/, noises/, test/,
    voice.json); returns the voice.json record."""
    # consecutive seeds start from different base voices, so that a few speakers are clearly distinct
    voice = random_voice(
        speaker_rng(seed, "voice"), base_voices, base_voice=base_voices[seed % len(base_voices)]
    )
    recording = draw_recording(speaker_rng(seed, "recording"))
    speaker = Speaker(voice, recording, seed)
    text_rng = speaker_rng(seed, "text")
    order = [pool[i] for i in text_rng.permutation(len(pool))]
    log.info("%s: true voice %s", speaker_id, voice)
    log.info("%s: recording %s", speaker_id, recording)

    with atomic_dir(out_dir) as tmp:
        enrollment, used = enrollment_clip(speaker, order, *enrollment_seconds, pause_rng=text_rng)
        enrollment_texts = [order[i] for i in used]
        remaining = [text for i, text in enumerate(order) if i not in used]
        if len(remaining) < num_test_utterances + num_sentences:
            raise ValueError(
                f"sentence pool too small: {len(remaining)} sentences left after the enrollment "
                f"clip, {num_test_utterances} test + {num_sentences} training needed"
            )
        test_texts = remaining[:num_test_utterances]
        train_texts = remaining[num_test_utterances : num_test_utterances + num_sentences]
        write_audio(tmp / "enrollment.wav", enrollment)
        write_sentence_file(tmp / "sentences.txt", train_texts)

        write_speech_folder(tmp / "gt", (
            {"utt_id": f"{speaker_id}_gt{i:04d}", "text": text, "audio": speaker.say(text, "gt", i)}
            for i, text in enumerate(tqdm(train_texts, desc=f"{speaker_id} gt"))
        ))

        noise_set = draw_noise_set(
            speaker_rng(seed, "noise"), num_noises, noise_seconds, pool, voices=base_voices
        )
        noise_table = write_noise_folder(tmp / "noises", f"{speaker_id}_", noise_set)

        clean_utts = [
            speaker.say(text, "test", i) for i, text in enumerate(tqdm(test_texts, desc=f"{speaker_id} test"))
        ]
        test_rng = speaker_rng(seed, "test")
        mixed = mixed_test_set(speaker_id, clean_utts, noise_set, list(noise_table.noise_id), test_snrs_db, test_rng)
        texts = [text for text in test_texts for _ in noise_set]  # mixed utterance by utterance
        write_test_folder(tmp / "test", ({**row, "text": text} for row, text in zip(mixed, texts)))

        voice_record = {
            "speaker": speaker_id,
            "seed": seed,
            "voice": voice.to_dict(),
            "recording": recording,
            "enrollment": {"duration_s": duration_s(enrollment), "texts": enrollment_texts},
            "test_texts": test_texts,
            "noise_kinds": [noise["kind"] for noise in noise_set],
        }
        atomic_write_text(tmp / "voice.json", json.dumps(voice_record, indent=2) + "\n")
    return voice_record
