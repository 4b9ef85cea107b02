"""Score a test folder's unprocessed mixtures once: SDR, eSTOI and PESQ-WB of
each mixture against its clean reference. Every evaluation of the speaker
reuses these instead of recomputing them per model.

    python -m workflow_scripts.score_mixtures --test-dir data/demo/spk01/test \
        --out-csv results/eval/mixtures/spk01.csv
"""

from __future__ import annotations

import argparse
import logging

import pandas as pd
from tqdm import tqdm

from workflow_scripts.files.audio import atomic_write_text, read_audio
from workflow_scripts.files.folders import read_test_folder
from workflow_scripts.evaluate import INPUT_METRICS, score_signals
from workflow_scripts.runtime.logs import setup_logging

log = logging.getLogger("score_mixtures")


def score_mixtures(test_dir: str) -> pd.DataFrame:
    table = read_test_folder(test_dir)
    rows = []
    for row in tqdm(table.itertuples(), total=len(table), desc="score mixtures", unit="utt", mininterval=5.0):
        scores = score_signals(read_audio(row.clean_wav), read_audio(row.mixture_wav), INPUT_METRICS)
        rows.append({"mixture_id": row.mixture_id, **scores})
    return pd.DataFrame(rows)[["mixture_id", *(name for name, _ in INPUT_METRICS), "notes"]]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test-dir", required=True, help="test folder (test.csv)")
    parser.add_argument("--out-csv", required=True, help="per-mixture scores")
    args = parser.parse_args(argv)
    setup_logging()
    scores = score_mixtures(args.test_dir)
    atomic_write_text(args.out_csv, scores.to_csv(index=False, float_format="%.4f"))
    log.info("%s: mean %s", args.test_dir, scores.drop(columns=["mixture_id", "notes"]).mean().round(3).to_dict())


if __name__ == "__main__":
    main()
