"""Build one target speaker of the demo world from a seed (world.speakers).

The speaker's folder: enrollment.wav (the only audio a TTS system may see),
sentences.txt, gt/ (their real speech of those sentences), noises/ (noise types
of their own), test/ (each clean test utterance mixed with each noise at an SNR
drawn from --test-snrs, with clean references) and voice.json.

    python -m workflow_scripts.build_world --speaker spk01 --seed 1 \
        --sentences workflow_scripts/data/sentences.txt --num-sentences 44 \
        --out-dir data/demo/spk01
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

from workflow_scripts.files.sentences import read_sentence_pool
from workflow_scripts.runtime.logs import setup_logging
from workflow_scripts.world.speakers import build_speaker

log = logging.getLogger("build_world")


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
    build_speaker(
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
