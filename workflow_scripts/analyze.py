"""Analyze step: the statistics behind the paper's open questions, from the evaluation tables and
the TTS scores (scoring.analysis builds the tables, scoring.analysis_tables writes them,
scoring.analysis_plots draws them; the statistics are scoring.statistics').

- significance.{md,html,csv}: per model size and condition, means over speakers with 95% bootstrap
  intervals; each condition against the generalist and gt, Wilcoxon over speakers and over
  utterances, Holm-corrected;
- tts_vs_gain.{md,html,csv,png} (which TTS score predicts the gain): Spearman's rho of the SDRi
  gain over the generalist and each TTS score, per model size and pooled, and within speakers;
- with --crossed, cross.{md,html,csv} (does a model personalized on one speaker serve another):
  matched against crossed models on the same test mixtures;
- with --speech, datasize.{csv,png} (how the gain grows with the data): SDRi against the minutes of
  training speech, read from the speech folders' manifests (the `duration_s` of each data size's
  training utterances).

Every input is read and checked before anything is written.

    python -m workflow_scripts.analyze \
        --eval results/eval/tiny/generalist/spk01.csv results/eval/tiny/gt/8utt/spk01.csv ... \
        --tts-scores results/tts_scores/gt/spk01.json ... \
        --crossed results/eval_crossed/tiny/worldclone/32utt/spk01/spk02.csv ... \
        --speech gt:spk01=data/speakers/spk01/gt ... --data-size 8utt 8 4 --data-size 32utt 32 4 \
        --out-dir results/analysis
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from workflow_scripts.files.audio import atomic_write_text
from workflow_scripts.runtime.logs import setup_logging
from workflow_scripts.scoring import analysis
from workflow_scripts.scoring import statistics as st
from workflow_scripts.scoring.analysis_plots import plot_datasize, plot_tts_vs_gain
from workflow_scripts.scoring.analysis_tables import cross_markdown, significance_markdown, tts_gain_markdown
from workflow_scripts.scoring.results import (
    add_result_arguments,
    eval_table_labels,
    read_eval_tables,
    read_tts_scores,
    tts_score_labels,
)
from workflow_scripts.scoring.tables import write_table_page

log = logging.getLogger("analyze")


def parse_speech(items: list[str]) -> dict[tuple[str, str], str]:
    """`SOURCE:SPEAKER=FOLDER` items -> {(source, speaker): folder}, each folder checked to exist."""
    folders = {}
    for item in items:
        key, sep, folder = item.partition("=")
        source, colon, speaker = key.partition(":")
        if not (sep and colon and source and speaker and folder):
            raise ValueError(f"--speech: expected SOURCE:SPEAKER=FOLDER, got {item!r}")
        if not Path(folder, "manifest.csv").is_file():
            raise FileNotFoundError(f"{folder}: speech folder without manifest.csv (--speech {item})")
        folders[(source, speaker)] = folder
    return folders


def parse_sizes(items: list[list[str]]) -> dict[str, tuple[int, int]]:
    """`NAME TRAIN VAL` triples -> {name: (train, val)}."""
    sizes = {}
    for name, train, val in items:
        if not (train.isdigit() and val.isdigit()):
            raise ValueError(f"--data-size {name} {train} {val}: TRAIN and VAL must be whole numbers")
        sizes[name] = (int(train), int(val))
    return sizes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_result_arguments(parser)
    parser.add_argument("--crossed", nargs="*", default=[], type=Path, metavar="CSV",
                        help="crossed evaluation tables, .../MODEL/SOURCE/SIZE/TRAIN/TEST.csv")
    parser.add_argument("--speech", nargs="*", default=[], metavar="SOURCE:SPEAKER=FOLDER",
                        help="the fine-tuning speech folders, for the minutes of each data size")
    parser.add_argument("--data-size", nargs=3, action="append", default=[], metavar=("NAME", "TRAIN", "VAL"),
                        help="a data size's training and validation utterances: orders the sizes in the"
                             " tables, and with --speech gives the minutes of training speech")
    parser.add_argument("--resamples", type=int, default=st.RESAMPLES, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=st.SEED, help="bootstrap seed")
    parser.add_argument("--out-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    setup_logging()

    # read and check everything first
    evals = read_eval_tables([eval_table_labels(path) for path in args.eval])
    tts = read_tts_scores([tts_score_labels(path) for path in args.tts_scores])
    crossed = analysis.read_crossed_tables(args.crossed) if args.crossed else None
    folders, sizes = parse_speech(args.speech), parse_sizes(args.data_size)
    metrics = analysis.metrics_present(evals)
    means = analysis.speaker_means(evals, metrics)
    minutes = None
    if folders:
        minutes = analysis.training_minutes(folders, sizes, analysis.conditions_of(means, sizes))

    # then compute, then write
    resampling = {"resamples": args.resamples, "seed": args.seed}
    mean_table, comparisons = analysis.significance(evals, metrics, sizes=sizes, **resampling)
    gains = analysis.gain_rows(means, tts)
    correlations = analysis.tts_gain_correlations(gains, tts, **resampling)
    pages = {
        "significance": (significance_markdown(mean_table, comparisons, metrics), "genda-pse significance"),
        "tts_vs_gain": (tts_gain_markdown(correlations), "genda-pse: TTS scores and the gain"),
    }
    tables = {"significance": pd.concat([mean_table.assign(kind="mean"), comparisons.assign(kind="comparison")],
                                        ignore_index=True),
              "tts_vs_gain": correlations}
    if crossed is not None:
        pairs = analysis.cross_pairs(evals, crossed, metrics)
        summary = analysis.cross_summary(evals, crossed, pairs, **resampling)
        pages["cross"] = (cross_markdown(pairs, summary), "genda-pse: crossed speakers")
        tables["cross"] = pd.concat([pairs.assign(kind="pair"), summary.assign(kind="over pairs")], ignore_index=True)
    if minutes is not None:
        curve = analysis.datasize_curve(means, minutes, **resampling)
        tables["datasize"] = curve

    out = args.out_dir
    for name, table in tables.items():
        atomic_write_text(out / f"{name}.csv", table.to_csv(index=False, float_format="%.6g"))
    for name, (text, title) in pages.items():
        write_table_page(out, name, text, title)
    plot_tts_vs_gain(gains, correlations, out / "tts_vs_gain.png")
    if minutes is not None:
        points = means.merge(minutes, on=["source", "size", "speaker"])
        plot_datasize(curve, points, out / "datasize.png")
    log.info("wrote %s to %s", ", ".join(sorted(tables)), out)


if __name__ == "__main__":
    main()
