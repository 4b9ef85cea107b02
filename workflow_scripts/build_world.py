"""Build one target speaker of the demo world from a seed.

The speaker gets a secret true voice and a way of being recorded (room,
microphone, level); one enrollment clip (the only audio a TTS system may see);
their real speech of the training sentences (`gt`); noise types of their own;
and the test mixtures (each clean test utterance mixed with each noise at an
SNR drawn from a list) with clean references.

    python -m workflow_scripts.build_world --speaker spk01 --seed 1 \
        --sentences workflow_scripts/data/sentences.txt --num-sentences 44 \
        --out-dir data/demo/spk01
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from workflow_scripts.files.audio import SAMPLE_RATE, atomic_dir, atomic_write_text, mix_at_snr, write_audio
from workflow_scripts.runtime.logs import setup_logging
from workflow_scripts.world.noises import draw_noise_set
from workflow_scripts.world.voices import VoiceParams, draw_recording, random_voice, record, speak

log = logging.getLogger("build_world")

PAUSE_S = (0.25, 0.6)  # silence between the sentences of the enrollment clip
MIXTURE_PEAK = 0.95  # a mixture louder than this is scaled down with its clean reference
# independent random streams of one speaker, so that e.g. more sentences do not change the voice
STREAMS = {"voice": 0, "recording": 1, "text": 2, "noise": 3, "test": 4, "level": 5}


def speaker_rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng([seed, STREAMS[stream]])


def read_sentence_pool(path: Path) -> list[str]:
    """Non-empty lines of a sentences file (format 1)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: sentences file not found")
    sentences = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not sentences:
        raise ValueError(f"{path}: sentences file has no sentences")
    return sentences


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
    for index, text in enumerate(candidates[:40]):
        speech = speak(text, speaker.voice)
        pause = int(pause_rng.uniform(*PAUSE_S) * SAMPLE_RATE) if pieces else 0
        # the room adds a 0.25 s tail to the whole clip
        if (length + pause + speech.size) / SAMPLE_RATE + 0.25 > max_s:
            continue
        pieces += [np.zeros(pause, np.float32), speech]
        used.append(index)
        length += pause + speech.size
        if length / SAMPLE_RATE + 0.25 >= min_s:
            return speaker.record(np.concatenate(pieces), "enrollment", 0), used
    raise ValueError(
        f"could not build an enrollment clip of {min_s}-{max_s} s from the first "
        f"{min(len(candidates), 40)} sentences of the pool"
    )


def write_speech_folder(
    folder: Path, utt_ids: list[str], texts: list[str], audios: list[np.ndarray], extra: dict | None = None
) -> pd.DataFrame:
    """wavs/{utt_id}.wav and manifest.csv (format 2), rows in the given order."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for utt_id, text, audio in zip(utt_ids, texts, audios):
        path = f"wavs/{utt_id}.wav"
        write_audio(folder / path, audio)
        rows.append(
            {"utt_id": utt_id, "path": path, "text": text, "duration_s": round(audio.size / SAMPLE_RATE, 4)}
        )
    manifest = pd.DataFrame(rows)
    for column, values in (extra or {}).items():
        manifest[column] = values
    manifest.to_csv(folder / "manifest.csv", index=False)
    return manifest


def write_noise_folder(folder: Path, noise_set: list[dict], prefix: str) -> pd.DataFrame:
    """{noise_id}.wav and noises.csv (format 3) with the kind and its parameters."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, noise in enumerate(noise_set):
        noise_id = f"{prefix}noise{index:02d}_{noise['kind']}"
        write_audio(folder / f"{noise_id}.wav", noise["audio"])
        rows.append(
            {
                "noise_id": noise_id,
                "path": f"{noise_id}.wav",
                "kind": noise["kind"],
                "duration_s": round(noise["audio"].size / SAMPLE_RATE, 4),
                "params": json.dumps(noise["params"], sort_keys=True),
            }
        )
    table = pd.DataFrame(rows)
    table.to_csv(folder / "noises.csv", index=False)
    return table


def write_test_folder(
    folder: Path,
    speaker_id: str,
    clean_utts: list[np.ndarray],
    noise_set: list[dict],
    noise_ids: list[str],
    snrs_db: list[float],
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Every clean utterance mixed with every noise (format 4).

    The noise starts at a random offset and is scaled to an SNR drawn from
    `snrs_db`; mixture - clean is exactly the scaled noise. A mixture whose
    peak exceeds MIXTURE_PEAK is scaled down together with its clean
    reference, so each mixture has its own clean file.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, clean in enumerate(clean_utts):
        for noise, noise_id in zip(noise_set, noise_ids):
            mixture_id = f"{speaker_id}_mix{len(rows):02d}"
            snr_db = float(snrs_db[int(rng.integers(len(snrs_db)))])
            offset = int(rng.integers(noise["audio"].size))
            _, scaled_noise = mix_at_snr(clean, noise["audio"], snr_db, offset)
            gain = min(1.0, MIXTURE_PEAK / float(np.max(np.abs(clean + scaled_noise))))
            clean_ref = (clean * gain).astype(np.float32)
            mixture = (clean_ref + (scaled_noise * gain).astype(np.float32)).astype(np.float32)
            write_audio(folder / f"mixtures/{mixture_id}.wav", mixture)
            write_audio(folder / f"clean/{mixture_id}.wav", clean_ref)
            rows.append(
                {
                    "mixture_id": mixture_id,
                    "mixture": f"mixtures/{mixture_id}.wav",
                    "clean": f"clean/{mixture_id}.wav",
                    "noise_id": noise_id,
                    "snr_db": snr_db,
                }
            )
    table = pd.DataFrame(rows, columns=["mixture_id", "mixture", "clean", "noise_id", "snr_db"])
    table.to_csv(folder / "test.csv", index=False)
    return table


def build_world(
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
    """Write the speaker's folder (see the module docstring); returns the voice.json record."""
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
        atomic_write_text(tmp / "sentences.txt", "\n".join(train_texts) + "\n")

        gt_audio = [
            speaker.say(text, "gt", i) for i, text in enumerate(tqdm(train_texts, desc=f"{speaker_id} gt"))
        ]
        write_speech_folder(
            tmp / "gt", [f"{speaker_id}_gt{i:04d}" for i in range(len(train_texts))], train_texts, gt_audio
        )

        noise_set = draw_noise_set(
            speaker_rng(seed, "noise"), num_noises, noise_seconds, pool, voices=base_voices
        )
        noise_table = write_noise_folder(tmp / "noises", noise_set, prefix=f"{speaker_id}_")

        clean_utts = [
            speaker.say(text, "test", i) for i, text in enumerate(tqdm(test_texts, desc=f"{speaker_id} test"))
        ]
        write_test_folder(
            tmp / "test",
            speaker_id,
            clean_utts,
            noise_set,
            list(noise_table.noise_id),
            test_snrs_db,
            speaker_rng(seed, "test"),
        )

        voice_record = {
            "speaker": speaker_id,
            "seed": seed,
            "voice": voice.to_dict(),
            "recording": recording,
            "enrollment": {"duration_s": round(enrollment.size / SAMPLE_RATE, 4), "texts": enrollment_texts},
            "test_texts": test_texts,
            "noise_kinds": [noise["kind"] for noise in noise_set],
        }
        atomic_write_text(tmp / "voice.json", json.dumps(voice_record, indent=2) + "\n")
    return voice_record


def check_args(args: argparse.Namespace) -> None:
    """Refuse bad arguments before any audio is made."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", args.speaker):
        raise ValueError(f"--speaker {args.speaker!r}: use letters, digits, '_', '.', '-'")
    min_s, max_s = args.enrollment_seconds
    if not 0 < min_s <= max_s:
        raise ValueError(f"--enrollment-seconds {min_s} {max_s}: need 0 < MIN <= MAX")
    for name in ("num_sentences", "num_test_utterances", "num_noises"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not args.test_snrs:
        raise ValueError("--test-snrs: give at least one SNR")
    if args.noise_seconds < 4.0:
        raise ValueError(f"--noise-seconds must be >= 4 (noise folder format), got {args.noise_seconds}")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--speaker", required=True, help="speaker id (names the files)")
    parser.add_argument("--seed", type=int, required=True, help="the speaker's seed: fixes everything")
    parser.add_argument("--sentences", type=Path, required=True, help="sentence pool, one per line")
    parser.add_argument(
        "--num-sentences",
        type=int,
        required=True,
        help="training sentences (the largest data size's train + val)",
    )
    parser.add_argument("--num-test-utterances", type=int, default=9)
    parser.add_argument("--num-noises", type=int, default=5)
    parser.add_argument("--test-snrs", type=float, nargs="+", default=[-2.5, 0.0, 2.5], metavar="DB")
    parser.add_argument(
        "--enrollment-seconds", type=float, nargs=2, default=[5.0, 10.0], metavar=("MIN", "MAX")
    )
    parser.add_argument("--base-voices", nargs="+", default=["kal16", "awb", "rms", "slt"])
    parser.add_argument("--noise-seconds", type=float, default=8.0, help="length of each noise (>= 4)")
    parser.add_argument("--out-dir", type=Path, required=True)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    check_args(args)
    pool = read_sentence_pool(args.sentences)
    needed = args.num_sentences + args.num_test_utterances + 1
    if len(pool) < needed:
        raise ValueError(
            f"{args.sentences}: {len(pool)} sentences, but {needed} are needed "
            f"({args.num_sentences} training + {args.num_test_utterances} test + enrollment)"
        )
    build_world(
        args.speaker,
        args.seed,
        pool,
        args.num_sentences,
        args.num_test_utterances,
        args.num_noises,
        args.test_snrs,
        tuple(args.enrollment_seconds),
        args.base_voices,
        args.out_dir,
        args.noise_seconds,
    )
    log.info("wrote %s", args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
