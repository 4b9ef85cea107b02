"""Prepare a folder of noisy mixtures without clean references as a test folder.

The challenge's 45 test mixtures of a speaker (--challenge-dir, --challenge-id:
data/{id}/mixed_wavs/{id}_mixed_NN.wav), or every audio file of --mixtures-dir by
name, become mixtures/{speaker}_mixed_NN.wav (16 kHz mono float32) and a test.csv
whose `clean`, `noise_id` and `snr_db` are empty. The Track 2 export enhances them.

    python -m workflow_scripts.prepare_challenge_test --speaker F0 \
        --challenge-dir resources/genda_challenge --challenge-id F0 \
        --out-dir data/speakers/F0/challenge_test
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from workflow_scripts.files import corpora
from workflow_scripts.files.audio import atomic_dir, audio_files
from workflow_scripts.files.folders import write_test_folder
from workflow_scripts.runtime.logs import setup_logging
from workflow_scripts.world.testsets import given_test_set

log = logging.getLogger("prepare_challenge_test")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speaker", required=True, help="speaker id (names the files)")
    parser.add_argument("--challenge-dir", type=Path, help="the GenDA 2025 challenge release")
    parser.add_argument("--challenge-id", help="the speaker's challenge id")
    parser.add_argument("--mixtures-dir", type=Path, help="a folder of mixtures instead")
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    if (args.challenge_dir is None) == (args.mixtures_dir is None):
        parser.error("give one of --challenge-dir (with --challenge-id) and --mixtures-dir")
    if args.challenge_dir and not args.challenge_id:
        parser.error("--challenge-dir needs --challenge-id")
    setup_logging()
    if args.challenge_dir:
        mixtures = corpora.challenge_mixtures(args.challenge_dir, args.challenge_id)
    else:
        mixtures = audio_files(args.mixtures_dir, "mixtures")
    with atomic_dir(args.out_dir) as tmp:
        write_test_folder(tmp, given_test_set(args.speaker, mixtures))
    log.info("%s: %d mixtures in %s", args.speaker, len(mixtures), args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
