"""Aggregate step: the paper-style results table and plots.

Metrics are averaged per speaker first, then over speakers (as the challenge
did). Rows: the unprocessed mixtures, the generalist, and every fine-tuning
condition (gt and each TTS system at each data size), per model size; TTS
rows also carry the speaker similarity (SECS) and WER of their speech
(scoring.results makes the tables, scoring.report the markdown and plots).

    python -m workflow_scripts.aggregate \
        --eval tiny:generalist:-:spk01=results/eval/tiny/generalist/spk01.csv ... \
        --tts-scores worldclone:spk01=results/tts_scores/worldclone/spk01.json ... \
        --out-dir results
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from workflow_scripts.files.audio import atomic_write_text
from workflow_scripts.runtime.logs import setup_logging
from workflow_scripts.scoring.report import (
    plot_sdri_by_condition,
    plot_secs_vs_sdri,
    summary_markdown,
    tts_markdown,
)
from workflow_scripts.scoring.results import (
    ALL,
    per_speaker_means,
    read_eval_tables,
    read_tts_scores,
    summarize_groups,
)

log = logging.getLogger("aggregate")


def parse_labelled(items: list[str], keys: list[str]) -> list[dict]:
    """`a:b:c=path` items -> dicts with the given keys and `path`."""
    rows = []
    for item in items:
        label, sep, path = item.partition("=")
        parts = label.split(":")
        if not sep or len(parts) != len(keys):
            raise ValueError(f"expected {':'.join(keys)}=PATH, got {item!r}")
        rows.append(dict(zip(keys, parts), path=path))
    return rows


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
    parser.add_argument("--eval", nargs="+", required=True, metavar="MODEL:SOURCE:SIZE:SPEAKER=CSV")
    parser.add_argument("--tts-scores", nargs="*", default=[], metavar="SOURCE:SPEAKER=JSON")
    parser.add_argument("--speaker-groups", nargs="*", default=[], metavar="SPEAKER=GROUP",
                        help="real/virtual/demo per speaker: tables for each group apart and together")
    parser.add_argument("--out-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    setup_logging()

    evals = read_eval_tables(parse_labelled(args.eval, ["model", "source", "size", "speaker"]))
    tts = read_tts_scores(parse_labelled(args.tts_scores, ["source", "speaker"]))
    speaker_means = per_speaker_means(evals)
    groups = parse_groups(args.speaker_groups)
    speaker_means["group"] = [groups.get(s, ALL) for s in speaker_means.speaker]
    summary = summarize_groups(speaker_means, tts, groups)

    out = args.out_dir
    atomic_write_text(out / "summary.csv", summary.to_csv(index=False))
    atomic_write_text(out / "summary_per_speaker.csv", speaker_means.to_csv(index=False))
    atomic_write_text(out / "summary.md", summary_markdown(summary, tts))
    atomic_write_text(out / "tts_summary.md", tts_markdown(tts))
    plot_sdri_by_condition(speaker_means, out / "plots" / "sdri_by_condition.png")
    plot_secs_vs_sdri(speaker_means, tts, out / "plots" / "secs_vs_sdri.png")
    print(summary_markdown(summary, tts), file=sys.stderr)


if __name__ == "__main__":
    main()
