"""Score a speech folder with the models that need only the CPU: Resemblyzer SECS and DNSMOS.

    python -m workflow_scripts.score_tts_cpu --enrollment data/speakers/spk01/enrollment.wav \
        --speech-dir results/speech/worldclone/spk01 --mos utmos dnsmos distillmos --threads 1 \
        --out results/tts_scores/worldclone/spk01.cpu.json

The job of `tts_scoring.cpu_job: true`: score_tts then reads this file (`--cpu-scores`) instead
of running these models, so that it holds a GPU slot only while its device models run. Of
`--mos`, only the CPU predictors run here (workflow_scripts.scoring.cpu_scores); the utterances
are those score_tts scores (the first `--max-utterances`, 0 for all).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from workflow_scripts.files.audio import SAMPLE_RATE, read_audio
from workflow_scripts.files.folders import read_speech_signals
from workflow_scripts.runtime.logs import setup_logging
from workflow_scripts.scoring.cpu_scores import score_on_cpu, write_cpu_scores
from workflow_scripts.scoring.mos import MOS_CHOICES

log = logging.getLogger("score_tts_cpu")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--enrollment", required=True, type=Path, help="the speaker's enrollment clip (wav)")
    parser.add_argument("--speech-dir", required=True, type=Path, help="speech folder to score (manifest.csv)")
    parser.add_argument("--mos", nargs="*", default=list(MOS_CHOICES), choices=MOS_CHOICES, metavar="PREDICTOR",
                        help="score_tts's MOS predictors; the CPU ones among them run here")
    parser.add_argument("--max-utterances", type=int, default=0,
                        help="score only the first N utterances of the folder (0: all)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (torch and each ONNX model)")
    parser.add_argument("--out", required=True, type=Path, help="the scores (JSON, read by score_tts)")
    args = parser.parse_args(argv)
    setup_logging()
    enrollment = read_audio(args.enrollment)
    manifest, audios = read_speech_signals(args.speech_dir, args.max_utterances)
    log.info("%s: %d utterances, %.1f s; enrollment %s (%.1f s)", args.speech_dir, len(audios),
             sum(a.size for a in audios) / SAMPLE_RATE, args.enrollment, enrollment.size / SAMPLE_RATE)

    import torch

    torch.set_num_threads(args.threads)
    scores = score_on_cpu(enrollment, audios, list(manifest.utt_id), args.mos, threads=args.threads)
    write_cpu_scores(scores, args.out)
    log.info("wrote %s: %s", args.out, ", ".join(scores.scores))
    return 0


if __name__ == "__main__":
    sys.exit(main())
