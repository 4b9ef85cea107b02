"""Import a speaker's speech made elsewhere by a TTS system (backend `folder`) as a speech folder.

The speaker's folder (--speaker-dir: in a Track 1 submission `{team}_task1/{spk}/`, holding
`{spk}_task1_NN.wav`; or a plain folder; files.tts_folders has the layouts) gives its files in
order; the first --num-utterances (what the system's largest data size uses) are each checked,
read as 16 kHz mono and written as the folder that synthesize would write
(workflow_scripts.tts.folder).

    python -m workflow_scripts.import_speech --speaker-dir submissions/mysys/team_task1/F0 \
        --speaker F0 --sentences data/speakers/F0/sentences.txt --tts mysys --num-utterances 50 \
        --out-dir results/speech/mysys/F0
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from workflow_scripts.files.tts_folders import folder_speech
from workflow_scripts.runtime.logs import setup_logging
from workflow_scripts.tts.folder import MIN_SECONDS, import_speech

log = logging.getLogger("import_speech")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speaker-dir", type=Path, required=True,
                        help="the speaker's folder in the TTS system's folder (files.tts_folders finds it)")
    parser.add_argument("--speaker", required=True, help="speaker id (utterance ids)")
    parser.add_argument("--sentences", type=Path, required=True,
                        help="the speaker's sentences.txt: the text of numbered files")
    parser.add_argument("--tts", required=True, help="TTS system name (utterance ids)")
    parser.add_argument("--num-utterances", type=int, required=True,
                        help="import the first N files (the system's largest data size)")
    parser.add_argument("--min-seconds", type=float, default=MIN_SECONDS, help="refuse shorter files")
    parser.add_argument("--out-dir", type=Path, required=True, help="speech folder to write")
    args = parser.parse_args(argv)
    if args.num_utterances < 1:
        parser.error(f"--num-utterances must be >= 1, got {args.num_utterances}")
    setup_logging()
    found = folder_speech(args.speaker_dir)
    speech = found.first(args.num_utterances)
    log.info("%s: the first %d of %d audio files, %s", speech.folder, len(speech.audio), len(found.audio),
             "texts from their transcripts" if speech.transcripts else f"numbered, texts from {args.sentences}")
    manifest = import_speech(speech, args.sentences, args.speaker, args.tts, args.out_dir, args.min_seconds)
    log.info("wrote %s: %d utterances, %.1f s of speech", args.out_dir, len(manifest), manifest.duration_s.sum())
    return 0


if __name__ == "__main__":
    sys.exit(main())
