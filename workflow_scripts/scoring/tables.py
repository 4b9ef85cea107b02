"""The results tables as a reader sees them: markdown to paste into a paper (summary.md,
tts_summary.md), and the same text as a standalone HTML page for the report.

Conventions of every table: units in the headers, WER in percent, the organisers' speaker
similarity (x-vector) before resemblyzer's, and a score that could not be computed is a short
"n/a" with a footnote number, its reason written once below the table.
"""

from __future__ import annotations

import html
import textwrap

import markdown
import numpy as np
import pandas as pd

from workflow_scripts.files.audio import atomic_write_text
from workflow_scripts.scoring.results import ALL, GROUP_TITLES

SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
NOT_AVAILABLE = "n/a"


class Notes:
    """The footnotes of a page: each reason gets a number the first time it is cited."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def cite(self, reason: str) -> str:
        """An "n/a" cell for `reason`, with its footnote number (a plain "n/a" when no reason)."""
        reason = " ".join(str(reason or "").split())
        if not reason:
            return NOT_AVAILABLE
        if reason not in self.reasons:
            self.reasons.append(reason)
        return NOT_AVAILABLE + str(self.reasons.index(reason) + 1).translate(SUPERSCRIPTS)

    def markdown(self) -> list[str]:
        if not self.reasons:
            return []
        lines = ["Notes:", ""]
        lines += [f"- {str(i).translate(SUPERSCRIPTS)} {reason}" for i, reason in enumerate(self.reasons, 1)]
        return lines + [""]


def fmt(value, digits: int = 2, scale: float = 1.0) -> str | None:
    """`value` (times `scale`) with `digits` decimals, or None when it is missing."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return f"{value * scale:.{digits}f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# ---- summary.md: the PSE results ------------------------------------------------------------

# (summary column, header, digits, scale)
PSE_COLUMNS = [("SDRi", "SDRi (dB)", 2, 1), ("SDRi_sd", "SDRi sd (dB)", 2, 1), ("SDR", "SDR (dB)", 2, 1),
               ("eSTOI", "eSTOI (0-1)", 3, 1), ("PESQ", "PESQ WB (1-4.6)", 2, 1)]
SPEECH_COLUMNS = [("SECS_xvector", "SECS x-vector (cos)", 3, 1), ("SECS", "SECS resemblyzer (cos)", 3, 1),
                  ("WER_pct", "WER (%)", 1, 1)]
NO_REFERENCES = ("not applicable: these speakers' test mixtures have no clean reference (they are"
                 " enhanced, and exported for the challenge)")
# the scores without a reference: (summary column without _in/_out, header, digits, family)
NONINTRUSIVE_COLUMNS = [("DNSMOS_SIG", "DNSMOS SIG", 2, "dnsmos"), ("DNSMOS_BAK", "DNSMOS BAK", 2, "dnsmos"),
                        ("DNSMOS_OVRL", "DNSMOS OVRL", 2, "dnsmos"), ("DistillMOS", "DistillMOS", 2, "distillmos"),
                        ("ASR_WER_pct", "WER", 1, "wer")]
NONINTRUSIVE_TITLES = {"dnsmos": "DNSMOS", "distillmos": "DistillMOS", "wer": "WER"}


def speakers_cell(row) -> str:
    n = int(row.n_speakers)
    scored = n if pd.isna(row.get("n_scored")) else int(row.n_scored)
    return f"{n} ({scored} with references)" if scored < n else str(n)


def summary_markdown(summary: pd.DataFrame, tts: pd.DataFrame) -> str:
    """The paper's table per model size (and per speaker group when there are several)."""
    notes = Notes()
    asr_names = sorted(set(tts.asr)) if len(tts) else []
    n_scored = sorted({int(n) for n in tts.n_utterances.dropna()}) if len(tts) else []
    speech_columns = [c for c in SPEECH_COLUMNS if c[0] in summary.columns]
    speech_reasons = speech_notes(tts)
    parts = [
        "# genda-pse results",
        "",
        "Each metric is averaged over a speaker's test utterances, then over speakers. SDR: scale-dependent",
        "SNR of zero-mean signals; SDRi: its improvement over the unprocessed mixture; sd: standard deviation",
        "over speakers. eSTOI (pystoi, extended) and wide-band PESQ on full utterances.",
    ]
    if speech_columns:
        parts += [
            "SECS: cosine similarity of the source's speech to the enrollment clip (x-vector as the challenge",
            "scored it, and resemblyzer). WER: corpus word error rate of the source's speech against its text,",
            f"in percent, transcribed by {', '.join(asr_names) or 'n/a'}. SECS and WER score the first",
            f"{' / '.join(map(str, n_scored)) or 'n/a'} utterances of each speaker's speech from that source,",
            "which every data size shares: they repeat across data sizes.",
        ]
    nonintrusive = [c for c in NONINTRUSIVE_COLUMNS if f"{c[0]}_out" in summary.columns]
    if nonintrusive:
        parts += nonintrusive_intro(summary, nonintrusive)
    parts.append("")
    if "group" not in summary.columns:
        summary = summary.assign(group=ALL)
    several_groups = summary.group.nunique() > 1
    header = ["Condition"] + [title for _, title, _, _ in PSE_COLUMNS + speech_columns] + ["speakers"]
    for model, by_model in summary.groupby("model", sort=False):
        parts += [f"## ConvTasNet {model}", ""]
        for group_name, group in by_model.groupby("group", sort=False):
            if several_groups:
                parts += [f"### {GROUP_TITLES.get(group_name, group_name)}", ""]
            rows = []
            for _, row in group.iterrows():
                cells = [str(row.condition)]
                unscored = row.get("n_scored") == 0
                for column, _, digits, scale in PSE_COLUMNS:
                    value = fmt(row.get(column), digits, scale)
                    if value is None and column == "SDRi_sd" and not unscored:
                        value = "-"  # one speaker, or the unprocessed row: no spread to give
                    cells.append(value if value is not None else notes.cite(NO_REFERENCES if unscored else ""))
                for column, _, digits, scale in speech_columns:
                    value = fmt(row.get(column), digits, scale)
                    if value is None:
                        value = "-" if row.source in ("-", "generalist") else notes.cite(
                            speech_reasons.get((row.source, column), ""))
                    cells.append(value)
                rows.append(cells + [speakers_cell(row)])
            parts += [markdown_table(header, rows), ""]
            if nonintrusive:
                parts += [f"{'####' if several_groups else '###'} Non-intrusive scores", "",
                          nonintrusive_table(group, nonintrusive, notes), ""]
    parts += notes.markdown()
    return "\n".join(parts)


def nonintrusive_intro(summary: pd.DataFrame, columns: list) -> list[str]:
    """What the non-intrusive tables hold, for the page's introduction."""
    counts = sorted({int(n) for n in summary.get("n_nonintrusive", pd.Series(dtype=float)).dropna() if n > 0})
    scored = f"on {' / '.join(map(str, counts))} of each speaker's test mixtures" if counts else "on its test mixtures"
    text = ("Non-intrusive scores need no clean reference, so every speaker has them: those of the unprocessed"
            f" mixtures (in) and of the enhanced speech (out) of the row's speakers, {scored}. DNSMOS P.835"
            " (SIG: speech, BAK: background, OVRL: overall) and DistillMOS are predicted MOS on a 1-5 scale.")
    if any(c[0] == "ASR_WER_pct" for c in columns):
        asr = sorted({a for names in summary.get("ASR_eval", pd.Series(dtype=object)).dropna()
                      for a in str(names).split(",") if a})
        text += (" WER: corpus word error rate per speaker against the test set's text, in percent, transcribed"
                 f" by {', '.join(asr) or 'n/a'}.")
    return textwrap.wrap(text, width=100)


def nonintrusive_table(group: pd.DataFrame, columns: list, notes: Notes) -> str:
    """The scores without a reference of each model's row: the mixture's beside the output's."""
    header = ["Condition"]
    for _, title, _, family in columns:
        unit = "(%)" if family == "wer" else "(1-5)"
        header += [f"{title} in {unit}", f"{title} out {unit}"]
    rows = []
    for _, row in group[group.condition != "unprocessed"].iterrows():
        cells = [str(row.condition)]
        for column, title, digits, family in columns:
            reason = row.get(f"{family}_reason")
            reason = f"{NONINTRUSIVE_TITLES[family]}: {reason}" if isinstance(reason, str) and reason else ""
            for side in ("_in", "_out"):
                value = fmt(row.get(column + side), digits)
                cells.append(value if value is not None else notes.cite(reason))
        n, with_text = int(row.n_speakers), row.get("n_with_text")
        with_text = n if with_text is None or pd.isna(with_text) else int(with_text)
        rows.append(cells + [f"{n} ({with_text} with text)" if with_text < n else str(n)])
    return markdown_table(header + ["speakers"], rows)


def speech_notes(tts: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(source, summary column) -> why that source's SECS or WER is missing."""
    reasons = {}
    if not len(tts):
        return reasons
    for column, score in (("SECS_xvector", "secs_xvector"), ("SECS", "secs"), ("WER_pct", "wer")):
        for source, rows in tts.groupby("source", sort=False):
            why = sorted({r for r in rows[f"{score}_reason"] if isinstance(r, str) and r})
            if why and rows[score].isna().all():
                reasons[(source, column)] = f"{dict(SPEECH_TITLES)[score]}: {'; '.join(why)}"
    return reasons


# ---- tts_summary.md: the speech of every source -------------------------------------------

# (tts score column, header, digits, scale)
SIMILARITY = [("secs_xvector", "SECS x-vector (cos)", 3, 1), ("secs", "SECS resemblyzer (cos)", 3, 1),
              ("wer", "WER (%)", 1, 100)]
QUALITY = [("utmos", "UTMOS (1-5)", 2, 1), ("dnsmos_ovrl", "DNSMOS OVRL (1-5)", 2, 1),
           ("distillmos", "DistillMOS (1-5)", 2, 1)]
PER_SPEAKER_SIMILARITY = SIMILARITY + [("wer_mean_per_utterance", "WER mean of utterances (%)", 1, 100)]
PER_SPEAKER_QUALITY = [QUALITY[0], ("dnsmos_sig", "DNSMOS SIG (1-5)", 2, 1), ("dnsmos_bak", "DNSMOS BAK (1-5)", 2, 1),
                       QUALITY[1], ("dnsmos_p808", "DNSMOS P.808 (1-5)", 2, 1), QUALITY[2]]
SPEECH_TITLES = [("secs_xvector", "SECS x-vector"), ("secs", "SECS resemblyzer"), ("wer", "WER"),
                 ("wer_mean_per_utterance", "WER"), ("utmos", "UTMOS"), ("dnsmos_ovrl", "DNSMOS"),
                 ("dnsmos_sig", "DNSMOS"), ("dnsmos_bak", "DNSMOS"), ("dnsmos_p808", "DNSMOS"),
                 ("distillmos", "DistillMOS")]
MODEL_KEYS = (("secs_xvector_model", "SECS x-vector"), ("secs_resemblyzer_model", "SECS resemblyzer"),
              ("asr", "ASR"), ("text_normalizer", "text normaliser"), ("utmos_model", "UTMOS"),
              ("dnsmos_model", "DNSMOS"), ("distillmos_model", "DistillMOS"))


def score_cell(rows: pd.DataFrame, column: str, digits: int, scale: float, notes: Notes) -> str:
    """Mean over `rows` of a score, or "n/a" with the footnote of why no row has it."""
    values = rows[column].dropna()
    if len(values):
        return fmt(float(values.mean()), digits, scale)
    reasons = sorted({r for r in rows[f"{column}_reason"] if isinstance(r, str) and r})
    title = dict(SPEECH_TITLES)[column]
    return notes.cite(f"{title}: {'; '.join(reasons)}" if reasons else "")


def tts_rows_table(groups, label_titles: list[str], scores, notes: Notes, count: str) -> str:
    """A markdown table with one row per group: its labels, each score, and a count
    (`speakers` per source, `utterances` per speaker)."""
    header = label_titles + [title for _, title, _, _ in scores] + [count]
    rows = []
    for labels, group in groups:
        labels = labels if isinstance(labels, tuple) else (labels,)
        n = group.speaker.nunique() if count == "speakers" else int(group.n_utterances.fillna(0).sum())
        rows.append([str(label) for label in labels]
                    + [score_cell(group, column, digits, scale, notes) for column, _, digits, scale in scores]
                    + [str(n)])
    return markdown_table(header, rows)


def tts_markdown(tts: pd.DataFrame) -> str:
    """The TTS table as the paper reports it (per source, mean over speakers), then per speaker:
    similarity and intelligibility, and predicted quality; the models; the notes."""
    if not len(tts):
        return "# TTS scores\n\nNo sources were scored.\n"
    notes = Notes()
    asr_names = ", ".join(sorted(set(tts.asr)))
    by_source = tts.groupby("source", sort=False)
    by_speaker = tts.groupby(["source", "speaker"], sort=False)
    parts = [
        "# TTS scores",
        "",
        "Per source (gt is the speakers' real speech): each score averaged over a speaker's scored utterances,",
        "then over speakers. SECS: cosine similarity of each utterance's speaker embedding to the enrollment",
        "clip's, with the x-vector the challenge used and with resemblyzer. WER: corpus word error rate per",
        f"speaker in percent (Whisper's English normaliser on both sides), transcribed by {asr_names}.",
        "UTMOS, DNSMOS, DistillMOS: predicted mean opinion scores on a 1-5 scale.",
        "",
        tts_rows_table(by_source, ["Source"], SIMILARITY + QUALITY, notes, "speakers"),
        "",
        "## Per speaker: similarity and intelligibility",
        "",
        tts_rows_table(by_speaker, ["Source", "Speaker"], PER_SPEAKER_SIMILARITY, notes, "utterances"),
        "",
        "## Per speaker: predicted quality",
        "",
        tts_rows_table(by_speaker, ["Source", "Speaker"], PER_SPEAKER_QUALITY, notes, "utterances"),
        "",
    ]
    models = []
    for key, title in MODEL_KEYS:
        names = sorted({n for n in tts.get(key, pd.Series(dtype=object)) if isinstance(n, str) and n and n != "none"})
        if names:
            models.append(f"- {title}: {', '.join(names)}")
    if models:
        parts += ["Models:", "", *models, ""]
    parts += notes.markdown()
    return "\n".join(parts)


# ---- the HTML page of a table, for the report -----------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; }
th { background: #eee; }
td { text-align: right; }
td:first-child, th:first-child { text-align: left; }
p, li { max-width: 60em; }
"""


def markdown_to_html(text: str, title: str) -> str:
    """A standalone HTML page of one of the markdown tables above."""
    body = markdown.markdown(text, extensions=["tables"])
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")


def write_table_page(out_dir, name: str, text: str, title: str) -> None:
    """A markdown table as out_dir/{name}.md (to paste) and {name}.html (the report's view)."""
    atomic_write_text(out_dir / f"{name}.md", text)
    atomic_write_text(out_dir / f"{name}.html", markdown_to_html(text, title))
