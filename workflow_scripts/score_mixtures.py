"""Score a test folder's unprocessed mixtures once: SDR, eSTOI and PESQ-WB of
each mixture against its clean reference. Every evaluation of the speaker
reuses these instead of recomputing them per model.

    python -m workflow_scripts.score_mixtures --test-dir data/demo/spk01/test \
        --out-csv results/eval/mixtures/spk01.csv
"""

from __future__ import annotations

import argparse
import logging

from tqdm import tqdm

from workflow_scripts.files.audio import AudioError, read_audio
from workflow_scripts.files.folders import read_test_folder
from workflow_scripts.runtime.logs import setup_logging
from workflow_scripts.scoring.enhanced import mixture_scores, write_score_table

log = logging.getLogger("score_mixtures")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test-dir", required=True, help="test folder (test.csv)")
    parser.add_argument("--out-csv", required=True, help="per-mixture scores")
    args = parser.parse_args(argv)
    setup_logging()
    table = read_test_folder(args.test_dir)
    without = [str(m) for m, clean in zip(table.mixture_id, table.clean_wav) if not clean]
    if without:
        raise AudioError(
            f"{args.test_dir}/test.csv: {len(without)} of {len(table)} mixtures have no clean reference"
            f" (e.g. {without[0]}); score_mixtures needs the clean reference of every mixture"
        )
    signals = ((read_audio(row.clean_wav), read_audio(row.mixture_wav)) for row in table.itertuples())
    progress = tqdm(signals, total=len(table), desc="score mixtures", unit="utt", mininterval=5.0)
    scores = mixture_scores(table.mixture_id, progress)
    write_score_table(args.out_csv, scores)
    log.info("%s: mean %s", args.test_dir, scores.drop(columns=["mixture_id", "notes"]).mean().round(3).to_dict())


if __name__ == "__main__":
    main()
