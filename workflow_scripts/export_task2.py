"""Track 2 of the GenDA 2025 challenge: a speaker's challenge test mixtures enhanced by one model.

The mixtures of --test-dir (prepare_challenge_test), in the order of its test.csv, are
enhanced one at a time and become {speaker}_task2_00..44.wav in --out-dir, mixture NN
-> output NN (files.challenge has the layout).

    python -m workflow_scripts.export_task2 --speaker F0 --model results/finetune/.../model.pt \
        --test-dir data/speakers/F0/challenge_test --out-dir results/export/team_task2/F0
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from workflow_scripts.files.audio import read_audio
from workflow_scripts.files.challenge import write_submission_folder
from workflow_scripts.files.folders import read_test_folder
from workflow_scripts.model.convtasnet import load_checkpoint
from workflow_scripts.model.enhance import enhance
from workflow_scripts.runtime.gpu import resolve_device
from workflow_scripts.runtime.logs import setup_logging

log = logging.getLogger("export_task2")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speaker", required=True)
    parser.add_argument("--model", type=Path, required=True, help="model checkpoint (.pt)")
    parser.add_argument("--test-dir", type=Path, required=True, help="test folder of the mixtures (test.csv)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    setup_logging()
    table = read_test_folder(args.test_dir)
    torch.set_num_threads(args.threads)
    device = torch.device(resolve_device(args.device))
    model, _ = load_checkpoint(args.model)
    model.to(device)
    enhanced = (enhance(model, read_audio(wav), device) for wav in table.mixture_wav)
    count = write_submission_folder(args.out_dir, args.speaker, 2, enhanced, len(table))
    log.info("task2: %d files -> %s", count, args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
