"""Take the challenge's released generalist ConvTasNet of one model size.

The release holds checkpoints/generalists/<date>_convtasnet_{tiny,small,...}.pt (asteroid
layout); the one of --model-size is loaded with strict key matching (so a wrong or
damaged file stops here, named) and saved to --out in the same layout, with a
`source` entry naming the released file. The challenge released tiny, small and
medium generalists; a large one must be pre-trained (generalist.source: pretrain).

    python -m workflow_scripts.prepare_generalist --challenge-dir resources/genda_challenge \
        --model-size tiny --out data/generalists/challenge/tiny.pt
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from workflow_scripts.model.convtasnet import (
    MODEL_SIZES,
    count_parameters,
    load_checkpoint,
    save_checkpoint,
    size_name,
)
from workflow_scripts.files.corpora import challenge_checkpoint
from workflow_scripts.runtime.logs import setup_logging

log = logging.getLogger("prepare_generalist")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--challenge-dir", type=Path, required=True, help="the GenDA 2025 challenge release")
    parser.add_argument("--model-size", choices=sorted(MODEL_SIZES), required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    setup_logging()
    released = challenge_checkpoint(args.challenge_dir, args.model_size)
    model, checkpoint = load_checkpoint(released)
    if size_name(model.config) != args.model_size:
        raise ValueError(
            f"{released}: the checkpoint is a {size_name(model.config) or 'non-standard'} ConvTasNet,"
            f" not {args.model_size}"
        )
    extra = {key: checkpoint[key] for key in ("num_examples",) if key in checkpoint}
    save_checkpoint(args.out, model, {**extra, "source": f"GenDA 2025 challenge release: {released.name}"})
    log.info("%s: %s generalist, %d parameters -> %s", released, args.model_size, count_parameters(model), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
