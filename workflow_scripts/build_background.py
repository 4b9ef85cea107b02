"""Build the demo's background pool: other people's speech and generic noises, for pre-training
(world.background): --out-dir gets speech/ (a speech folder with a `speaker` column,
the speakers' utterances interleaved) and noises/.

    python -m workflow_scripts.build_background --seed 1000 --num-speakers 12 \
        --utterances-per-speaker 16 --num-noises 16 \
        --sentences workflow_scripts/data/sentences.txt --out-dir data/background
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from workflow_scripts.files.sentences import read_sentence_pool
from workflow_scripts.runtime.logs import setup_logging
from workflow_scripts.world.background import build_background

log = logging.getLogger("build_background")


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
