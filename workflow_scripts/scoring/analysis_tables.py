"""The analysis tables as a reader sees them (significance.md, tts_vs_gain.md, cross.md), in the
conventions of scoring.tables: units in the headers, a missing value as "n/a" with a footnote
number and its reason written once below the table. Intervals are 95% bootstrap intervals in
brackets; p-values are Holm-corrected, `*` marking p < 0.05 after correction."""

from __future__ import annotations

import numpy as np
import pandas as pd

from workflow_scripts.scoring import statistics as st
from workflow_scripts.scoring.analysis import LOWER_IS_BETTER, POOLED, TTS_SCORES, TTS_TITLES, metric_title
from workflow_scripts.scoring.tables import Notes, fmt, markdown_table

ALPHA = 0.05
METHOD = (f"95% intervals: percentile bootstrap, {st.RESAMPLES:,} resamples, seed {st.SEED}. An interval or"
          f" p-value needs at least {st.MIN_PAIRS} speakers (pairs); with fewer the cell says why.")


def missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def value_cell(value, digits: int, scale: float, notes: Notes, reason: str = "", signed: bool = False) -> str:
    if missing(value):
        return notes.cite(reason)
    text = f"{value * scale:+.{digits}f}" if signed else fmt(value, digits, scale)
    return text


def interval_cell(estimate, low, high, reason: str, digits: int, scale: float, notes: Notes,
                  signed: bool = False, estimate_reason: str = "") -> str:
    """`estimate [low, high]`, the bounds "n/a" with their footnote where there is no interval."""
    if missing(estimate):
        return notes.cite(estimate_reason or reason)
    text = value_cell(estimate, digits, scale, notes, signed=signed)
    if missing(low) or missing(high):
        return f"{text} [{notes.cite(reason)}]"
    bounds = sorted((low * scale, high * scale))
    return f"{text} [{bounds[0]:.{digits}f}, {bounds[1]:.{digits}f}]"


def p_cell(p, reason: str, notes: Notes) -> str:
    if missing(p):
        return notes.cite(reason)
    text = "<0.001" if p < 0.001 else f"{p:.3f}"
    return text + ("*" if p < ALPHA else "")


def significance_markdown(means: pd.DataFrame, comparisons: pd.DataFrame, metrics: list[str]) -> str:
    notes = Notes()
    lower = [metric_title(m)[0] for m in metrics if m in LOWER_IS_BETTER]
    parts = [
        "# Significance of the PSE results",
        "",
        "Each metric is averaged over a speaker's test utterances, then over speakers. First, each condition's",
        "mean over speakers with its 95% interval. Then each condition against the generalist and against gt",
        "(at the same data size, else gt's last listed size) on the speakers that have both: the mean of the",
        "per-speaker differences (condition minus reference) with its interval, and two-sided Wilcoxon",
        "signed-rank tests over speakers (pairs of speaker means) and over utterances (pairs of the same test",
        "mixture; a speaker's utterances are not independent, so read this view as a second one). p-values are",
        "Holm-corrected within a model size, metric and view; * marks p < 0.05 after correction.",
        METHOD,
    ]
    if lower:
        parts.append(f"Lower is better for {', '.join(lower)}.")
    parts.append("")
    for model, model_means in means.groupby("model", sort=False):
        parts += [f"## ConvTasNet {model}", "", "### Means over speakers", ""]
        header = ["Condition"] + [metric_title(m)[0] for m in metrics] + ["speakers"]
        rows = []
        for condition, group in model_means.groupby("condition", sort=False):
            cells = [condition]
            for metric in metrics:
                row = group[group.metric == metric].iloc[0]
                _, digits, scale = metric_title(metric)
                cells.append(interval_cell(row["mean"], row.low, row.high, row.reason, digits, scale, notes,
                                           estimate_reason=f"{metric_title(metric)[0]}: no speaker has this score"))
            cells.append(str(int(group[group.metric == metrics[0]].n_speakers.iloc[0])))
            rows.append(cells)
        parts += [markdown_table(header, rows), ""]
        model_comparisons = comparisons[comparisons.model == model] if len(comparisons) else comparisons
        if not len(model_comparisons):
            continue
        parts += ["### Against the generalist and gt", ""]
        header = ["Condition", "against", "metric", "difference [95%]", "speakers", "p over speakers (Holm)",
                  "utterances", "p over utterances (Holm)"]
        rows = []
        for row in model_comparisons.itertuples(index=False):
            title, digits, scale = metric_title(row.metric)
            rows.append([row.condition, row.reference, title,
                         interval_cell(row.difference, row.low, row.high, row.interval_reason, digits, scale,
                                       notes, signed=True, estimate_reason="no speaker has both"),
                         str(row.n), p_cell(row.p_units_holm, row.units_reason, notes), str(row.n_utterances),
                         p_cell(row.p_utterances_holm, row.utterances_reason, notes)])
        parts += [markdown_table(header, rows), ""]
    parts += notes.markdown()
    return "\n".join(parts)


def tts_gain_markdown(correlations: pd.DataFrame) -> str:
    notes = Notes()
    parts = [
        "# Which TTS score predicts the personalization gain?",
        "",
        "One row per (speaker, fine-tuning source, data size, model size): the gain is the fine-tuned model's",
        "SDRi minus the generalist's on the same speaker and model size (dB); the score is that source's on",
        "that speaker (gt, the speakers' real speech, is a source too). Spearman's rho of gain and score, with",
        "its 95% interval resampling speakers (all rows of a speaker together). Within speakers: gain and score",
        "each minus its speaker's mean (per model size) before correlating, so that a speaker who is easy or",
        "hard for every model adds nothing; this needs two sources per speaker. A speaker's data sizes share one",
        "score (the same speech is scored). WER: lower is better, so a WER that predicts the gain has rho < 0.",
        METHOD,
        "",
    ]
    present = correlations[correlations.absent_reason == ""] if len(correlations) else correlations
    header = ["TTS score", "model", "rows", "speakers", "sources", "rho [95%]", "rho within speakers [95%]"]
    rows = []
    for row in present.itertuples(index=False):
        model = "all sizes" if row.model == POOLED else row.model
        rows.append([TTS_SCORES[row.score][0], model, str(int(row.n_rows)), str(int(row.n_speakers)), row.sources,
                     interval_cell(row.rho, row.low, row.high, row.reason, 2, 1, notes, signed=True),
                     interval_cell(row.rho_within, row.low_within, row.high_within, row.reason_within, 2, 1,
                                   notes, signed=True)])
    parts += [markdown_table(header, rows) if rows else "No TTS score was computed for any source.", ""]
    absent = correlations[correlations.absent_reason != ""] if len(correlations) else correlations
    if len(absent):
        cited = [f"{TTS_SCORES[r.score][0]} {notes.cite(f'{TTS_TITLES[r.score]}: {r.absent_reason}')}"
                 for r in absent.itertuples(index=False)]
        parts += [f"Not in this run: {', '.join(cited)}.", ""]
    parts += notes.markdown()
    return "\n".join(parts)


def cross_markdown(pairs: pd.DataFrame, summary: pd.DataFrame) -> str:
    notes = Notes()
    parts = [
        "# Does a model personalized on one speaker serve another?",
        "",
        "Each crossed pair: the model fine-tuned on the training speaker's data (source, data size) enhances",
        "the test speaker's test mixtures (crossed), against the test speaker's own model of the same source",
        "and size (matched) and the generalist on the same mixtures. Gap: matched minus crossed (> 0 for SDRi:",
        "personalizing to the right speaker helped). Over pairs: the mean gap with its 95% interval, and",
        "two-sided Wilcoxon signed-rank tests of matched against crossed over pairs and over utterances (the",
        "same test mixture's pair); Holm-corrected within a model size, metric and view, * marks p < 0.05.",
        METHOD,
        "",
    ]
    for model, model_pairs in pairs.groupby("model", sort=False):
        parts += [f"## ConvTasNet {model}", "", "### Per pair: SDRi (dB)", ""]
        sdri = model_pairs[model_pairs.metric == "sdri_db"]
        header = ["source", "size", "trained on", "tested on", "generalist (dB)", "matched (dB)", "crossed (dB)",
                  "gap (dB)"]
        rows = [[r.source, r.size, r.train, r.test, value_cell(r.generalist, 2, 1, notes, "no generalist table"),
                 value_cell(r.matched, 2, 1, notes, "no references"), value_cell(r.crossed, 2, 1, notes, "no references"),
                 value_cell(r.gap, 2, 1, notes, "no references", signed=True)] for r in sdri.itertuples(index=False)]
        parts += [markdown_table(header, rows), "", "### Over pairs", ""]
        header = ["condition", "metric", "pairs", "matched", "crossed", "gap [95%]", "p over pairs (Holm)",
                  "utterances", "p over utterances (Holm)"]
        rows = []
        for r in summary[summary.model == model].itertuples(index=False):
            title, digits, scale = metric_title(r.metric)
            rows.append([f"{r.source} {r.size}", title, str(r.n), value_cell(r.matched, digits, scale, notes),
                         value_cell(r.crossed, digits, scale, notes),
                         interval_cell(r.difference, r.low, r.high, r.interval_reason, digits, scale, notes,
                                       signed=True, estimate_reason="no pair has both"),
                         p_cell(r.p_units_holm, r.units_reason, notes), str(r.n_utterances),
                         p_cell(r.p_utterances_holm, r.utterances_reason, notes)])
        parts += [markdown_table(header, rows), ""]
    parts += notes.markdown()
    return "\n".join(parts)
