"""Score a test folder's unprocessed mixtures once: SDR, eSTOI and PESQ-WB of each
mixture against its clean reference (NaN, with the note "not applicable: no clean
reference", where it has none), and the scores that need no reference: predicted MOS
(DNSMOS SIG/BAK/OVRL, DistillMOS) and, where test.csv has the text, the WER of an ASR.
Every evaluation of the speaker reuses these instead of recomputing them per model.

    python -m workflow_scripts.score_mixtures --test-dir data/demo/spk01/test \
        --mos dnsmos distillmos --asr none --out-csv results/eval/mixtures/spk01.csv
"""

from __future__ import annotations

import argparse
import logging

from tqdm import tqdm

from workflow_scripts.files.folders import read_test_folder, read_test_signals
from workflow_scripts.runtime.gpu import resolve_device
from workflow_scripts.runtime.logs import setup_logging
from workflow_scripts.scoring.enhanced import (
    MIXTURE_SCORE_COLUMNS,
    merge_scores,
    mixture_scores,
    write_score_table,
)
from workflow_scripts.scoring.nonintrusive import INPUT, add_arguments, give_back_device, make_plan

log = logging.getLogger("score_mixtures")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test-dir", required=True, help="test folder (test.csv)")
    parser.add_argument("--out-csv", required=True, help="per-mixture scores")
    add_arguments(parser)
    parser.add_argument("--device", default="cpu", help="cpu, auto, cuda, cuda:N: where DistillMOS and Whisper run")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    setup_logging()
    if args.max_utterances < 0:
        raise ValueError(f"--max-utterances must be >= 0, got {args.max_utterances}")
    table = read_test_folder(args.test_dir)
    mixtures, cleans = read_test_signals(table)
    without = sum(clean is None for clean in cleans)
    if without:
        log.info("%s: %d of %d mixtures have no clean reference: their reference metrics are not applicable",
                 args.test_dir, without, len(table))
    device = resolve_device(args.device)
    plan = make_plan(args.mos, args.asr, table.text, args.max_utterances, device, args.model_dir,
                     args.whisper_model)
    signals = {INPUT: mixtures}
    extra = plan.score_on_device(signals)
    give_back_device(device)
    extra.update(plan.score_asr(signals))
    rows = [mixture_scores(clean, mixture, plan.cpu_mos if chosen else ())
            for clean, mixture, chosen in tqdm(zip(cleans, mixtures, plan.chosen), total=len(table),
                                               desc="score mixtures", unit="utt", mininterval=5.0)]
    columns = [*MIXTURE_SCORE_COLUMNS[1:], *(c for c in plan.columns() if c.endswith(INPUT) or c == "reference_words"),
               "notes"]
    scores, _, _ = merge_scores(rows, extra, plan.wer_notes(), columns)
    scores.insert(0, "mixture_id", list(table.mixture_id))
    write_score_table(args.out_csv, scores)
    log.info("%s: mean %s", args.test_dir, scores.drop(columns=["mixture_id", "notes"]).mean().round(3).to_dict())


if __name__ == "__main__":
    main()
