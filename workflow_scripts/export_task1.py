"""Track 1 of the GenDA 2025 challenge: a speaker's given sentences as synthesized by one TTS system.

The first --num-utterances utterances of the system's speech folder (their texts are
checked against the first lines of the speaker's sentences.txt) become
{speaker}_task1_00..49.wav in --out-dir (files.challenge has the layout).

    python -m workflow_scripts.export_task1 --speaker F0 --speech-dir results/speech/xtts/F0 \
        --sentences data/speakers/F0/sentences.txt --out-dir results/export/team_task1/F0
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from workflow_scripts.files.audio import read_audio
from workflow_scripts.files.challenge import TRACK1_UTTERANCES, track1_rows, write_submission_folder
from workflow_scripts.files.folders import read_speech_folder
from workflow_scripts.files.sentences import read_sentence_file
from workflow_scripts.runtime.logs import setup_logging

log = logging.getLogger("export_task1")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speaker", required=True)
    parser.add_argument("--speech-dir", type=Path, required=True, help="the TTS system's speech folder")
    parser.add_argument("--sentences", type=Path, required=True, help="the speaker's sentences.txt")
    parser.add_argument("--num-utterances", type=int, default=TRACK1_UTTERANCES)
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    setup_logging()
    rows = track1_rows(read_speech_folder(args.speech_dir), read_sentence_file(args.sentences),
                       args.num_utterances, args.speech_dir, args.sentences)
    audios = (read_audio(wav) for wav in rows.wav)
    count = write_submission_folder(args.out_dir, args.speaker, 1, audios, len(rows))
    log.info("task1: %d files -> %s", count, args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
