"""Aggregate step: the paper-style results table and plots.

Metrics are averaged per speaker first, then over speakers (as the challenge
did). Rows: the unprocessed mixtures, the generalist, and every fine-tuning
condition (gt and each TTS system at each data size), per model size; TTS
rows also carry the speaker similarity (SECS) and WER of their speech
(scoring.results makes the tables, scoring.tables the markdown and HTML pages, scoring.plots
the plots). Each table's labels come from its path, as the evaluate and score_tts rules
name them.

    python -m workflow_scripts.aggregate \
        --eval results/eval/tiny/generalist/spk01.csv results/eval/tiny/gt/4min/spk01.csv ... \
        --tts-scores results/tts_scores/worldclone/spk01.json ... \
        --out-dir results
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from workflow_scripts.files.audio import atomic_write_text
from workflow_scripts.runtime.logs import setup_logging
from workflow_scripts.scoring.plots import plot_sdri_by_condition, plot_secs_vs_sdri
from workflow_scripts.scoring.results import (
    ALL,
    add_result_arguments,
    eval_table_labels,
    per_speaker_means,
    read_eval_tables,
    read_tts_scores,
    summarize_groups,
    tts_score_labels,
)
from workflow_scripts.scoring.tables import summary_markdown, tts_markdown, write_table_page

log = logging.getLogger("aggregate")


def parse_groups(items: list[str]) -> dict[str, str]:
    """`speaker=group` items -> {speaker: group}."""
    groups = {}
    for item in items:
        speaker, sep, group = item.partition("=")
        if not sep or not speaker or not group:
            raise ValueError(f"expected SPEAKER=GROUP, got {item!r}")
        groups[speaker] = group
    return groups


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_result_arguments(parser)
    parser.add_argument("--speaker-groups", nargs="*", default=[], metavar="SPEAKER=GROUP",
                        help="real/virtual/demo per speaker: tables for each group apart and together")
    parser.add_argument("--out-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    setup_logging()

    evals = read_eval_tables([eval_table_labels(path) for path in args.eval])
    tts = read_tts_scores([tts_score_labels(path) for path in args.tts_scores])
    speaker_means = per_speaker_means(evals)
    groups = parse_groups(args.speaker_groups)
    speaker_means["group"] = [groups.get(s, ALL) for s in speaker_means.speaker]
    summary = summarize_groups(speaker_means, tts, groups)

    out = args.out_dir
    atomic_write_text(out / "summary.csv", summary.to_csv(index=False))
    atomic_write_text(out / "summary_per_speaker.csv", speaker_means.to_csv(index=False))
    pages = {"summary": (summary_markdown(summary, tts), "genda-pse results"),
             "tts_summary": (tts_markdown(tts), "genda-pse TTS scores")}
    for name, (text, title) in pages.items():
        write_table_page(out, name, text, title)
    plot_sdri_by_condition(speaker_means, out / "plots" / "sdri_by_condition.png")
    plot_secs_vs_sdri(speaker_means, tts, out / "plots" / "secs_vs_sdri.png")
    print(pages["summary"][0], file=sys.stderr)


if __name__ == "__main__":
    main()
