"""One zip of a track's speaker folders, with a folder per speaker, as the GenDA 2025 challenge asks.

    python -m workflow_scripts.export_zip --folders results/export/team_task2/* \
        --out results/export/team_task2.zip
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from workflow_scripts.files.challenge import write_submission_zip
from workflow_scripts.runtime.logs import setup_logging

log = logging.getLogger("export_zip")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folders", type=Path, nargs="+", required=True, help="the speaker folders")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    setup_logging()
    count = write_submission_zip(args.folders, args.out)
    log.info("zip: %d files -> %s", count, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
