"""The results tables of a run: per-utterance evaluation tables and per-speaker TTS score
summaries, averaged per speaker first, then over speakers (as the challenge did), for all
speakers and for each group of speakers (real, virtual) apart.

Rows: the unprocessed mixtures, the generalist, and every fine-tuning condition (gt and
each TTS system at each data size), per model size; TTS rows also carry the speaker
similarity (SECS) and WER of their speech. The scores that need no clean reference
(predicted MOS, the WER of the enhanced speech) come in pairs: the mixture's (`*_in`) and
the enhanced speech's (`*_out`), averaged over the same speakers; where one is missing,
`<family>_reason` says why (from the evaluation tables' notes).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

# per-utterance column -> table column
METRIC_TITLES = {"sdri_db": "SDRi", "sdr_db": "SDR", "estoi": "eSTOI", "pesq": "PESQ"}
INPUT_METRIC_TITLES = {"sdr_in_db": "SDR", "estoi_in": "eSTOI", "pesq_in": "PESQ"}
# scores without a reference: per-utterance column (the mixture's with "_in") -> summary columns
# {title}_in and {title}_out (WER in percent)
NONINTRUSIVE_TITLES = {"dnsmos_sig": "DNSMOS_SIG", "dnsmos_bak": "DNSMOS_BAK", "dnsmos_ovrl": "DNSMOS_OVRL",
                       "distillmos": "DistillMOS", "wer": "ASR_WER_pct"}
# the family of each such score: its notes start with "{family}: "
NONINTRUSIVE_FAMILIES = {"dnsmos_sig": "dnsmos", "dnsmos_bak": "dnsmos", "dnsmos_ovrl": "dnsmos",
                         "distillmos": "distillmos", "wer": "wer"}
GENERALIST = "generalist"


def eval_table_labels(path: Path) -> dict:
    """model, source, size and speaker of an evaluation table, from its path:
    `.../MODEL/generalist/SPEAKER.csv` (size "-") or `.../MODEL/SOURCE/SIZE/SPEAKER.csv`."""
    path = Path(path)
    parts = path.with_suffix("").parts
    if path.suffix != ".csv" or len(parts) < 3:
        raise ValueError(f"{path}: not an evaluation table path (MODEL/generalist/SPEAKER.csv or"
                         " MODEL/SOURCE/SIZE/SPEAKER.csv)")
    if parts[-2] == GENERALIST:
        return {"model": parts[-3], "source": GENERALIST, "size": "-", "speaker": parts[-1], "path": str(path)}
    if len(parts) < 4:
        raise ValueError(f"{path}: not an evaluation table path (MODEL/SOURCE/SIZE/SPEAKER.csv)")
    return {"model": parts[-4], "source": parts[-3], "size": parts[-2], "speaker": parts[-1], "path": str(path)}


def tts_score_labels(path: Path) -> dict:
    """source and speaker of a TTS score summary, from its path `.../SOURCE/SPEAKER.json`."""
    path = Path(path)
    if path.suffix != ".json" or len(path.parts) < 2:
        raise ValueError(f"{path}: not a TTS score summary path (SOURCE/SPEAKER.json)")
    return {"source": path.parent.name, "speaker": path.stem, "path": str(path)}


def read_eval_tables(entries: list[dict]) -> pd.DataFrame:
    """Concatenate per-utterance evaluation tables with their labels."""
    frames = []
    for entry in entries:
        path = Path(entry["path"])
        if not path.is_file():
            raise FileNotFoundError(f"{path}: evaluation table not found")
        table = pd.read_csv(path)
        missing = [c for c in list(METRIC_TITLES) + list(INPUT_METRIC_TITLES) if c not in table.columns]
        if missing:
            raise ValueError(f"{path}: missing columns {', '.join(missing)}")
        for key in ("model", "source", "size", "speaker"):
            table[key] = entry[key]
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


# per-speaker TTS score column -> (summary fields tried in turn, summary field that says why it is empty)
TTS_SCORES = {
    "secs": (("secs_resemblyzer_mean", "secs_mean"), "secs_resemblyzer_reason"),
    "secs_xvector": (("secs_xvector_mean",), "secs_xvector_reason"),
    "wer": (("wer",), "asr_reason"),
    "wer_mean_per_utterance": (("wer_mean_per_utterance",), "asr_reason"),
    "utmos": (("utmos_mean",), "utmos_reason"),
    "dnsmos_ovrl": (("dnsmos_ovrl_mean",), "dnsmos_reason"),
    "dnsmos_sig": (("dnsmos_sig_mean",), "dnsmos_reason"),
    "dnsmos_bak": (("dnsmos_bak_mean",), "dnsmos_reason"),
    "dnsmos_p808": (("dnsmos_p808_mean",), "dnsmos_reason"),
    "distillmos": (("distillmos_mean",), "distillmos_reason"),
}
TTS_MODELS = ("secs_resemblyzer_model", "secs_xvector_model", "asr", "text_normalizer", "utmos_model",
              "dnsmos_model", "distillmos_model")


def read_tts_scores(entries: list[dict]) -> pd.DataFrame:
    """One row per (source, speaker): each score's mean (NaN when missing), `<score>_reason` saying
    why a score is missing, and the models behind the scores."""
    rows = []
    for entry in entries:
        path = Path(entry["path"])
        if not path.is_file():
            raise FileNotFoundError(f"{path}: TTS score summary not found")
        summary = json.loads(path.read_text())
        row = {"source": entry["source"], "speaker": entry["speaker"],
               "n_utterances": summary.get("n_utterances")}
        for column, (fields, reason_field) in TTS_SCORES.items():
            value = next((summary[f] for f in fields if summary.get(f) is not None), None)
            row[column] = np.nan if value is None else float(value)
            reason = summary.get(reason_field) or ""
            row[f"{column}_reason"] = reason if value is None and reason else (
                "" if value is not None else f"not in {path.name}")
        row.update({key: summary.get(key) or "" for key in TTS_MODELS})
        row["asr"] = summary.get("asr") or "none"
        row["asr_reason"] = summary.get("asr_reason", "")
        rows.append(row)
    return pd.DataFrame(rows)


def condition_name(source: str, size: str) -> str:
    return GENERALIST if source == GENERALIST else f"{source} {size}"


def nonintrusive_scores(columns) -> list[str]:
    """The scores without a reference that a table of these columns holds (both sides present)."""
    return [name for name in NONINTRUSIVE_TITLES if name in columns and f"{name}_in" in columns]


def corpus_wer(group: pd.DataFrame, column: str) -> float:
    """All word errors / all reference words of the utterances with a WER in `column`."""
    words = group["reference_words"].astype(float)
    both = group[column].notna() & words.notna()
    return float((group[column] * words)[both].sum() / words[both].sum()) if both.any() else np.nan


def note_reasons(notes: pd.Series, family: str) -> str:
    """The distinct reasons the notes give for the scores of `family` ("{family}: reason")."""
    prefix = f"{family}: "
    found = {part.strip()[len(prefix):] for text in notes.fillna("").astype(str)
             for part in text.split("; ") if part.strip().startswith(prefix)}
    return "; ".join(sorted(found))


def per_speaker_means(evals: pd.DataFrame) -> pd.DataFrame:
    """Mean of each metric per (model, source, size, speaker), NaN ignored; the WER of the
    enhanced speech and of the mixture as the corpus WER of the speaker's utterances, and
    `<family>_reason` for the scores without a reference."""
    columns = list(METRIC_TITLES) + list(INPUT_METRIC_TITLES)
    nonintrusive = nonintrusive_scores(evals.columns)
    by_speaker = evals.groupby(["model", "source", "size", "speaker"], sort=False)
    grouped = by_speaker[columns]
    means = grouped.mean().reset_index()
    means["n_utterances"] = grouped.size().values
    means["n_missing"] = grouped.apply(lambda g: int(g.isna().sum().sum())).values
    for name in nonintrusive:
        for column in (f"{name}_in", name):
            if name == "wer":
                means[column] = by_speaker.apply(lambda g, c=column: corpus_wer(g, c), include_groups=False).values
            else:
                means[column] = by_speaker[column].mean().values
    for family in dict.fromkeys(NONINTRUSIVE_FAMILIES[name] for name in nonintrusive):
        means[f"{family}_reason"] = by_speaker["notes"].apply(lambda n, f=family: note_reasons(n, f)).values
    if nonintrusive:
        outputs = evals[nonintrusive].notna().any(axis=1)
        means["n_nonintrusive"] = outputs.groupby([evals[k] for k in ("model", "source", "size", "speaker")],
                                                  sort=False).sum().values
    if "wer" in nonintrusive and "asr" in evals.columns:
        means["asr"] = by_speaker["asr"].apply(lambda a: ",".join(sorted({str(x) for x in a.dropna() if x}))).values
    return means


def nonintrusive_summary(group: pd.DataFrame, unprocessed: bool) -> dict:
    """The summary columns of the scores without a reference over a row's speakers: the
    mixture's (`_in`) and, for a model, the enhanced speech's (`_out`); `<family>_reason`
    where a score is missing, `ASR_eval` the ASR behind the WER."""
    row, reasons = {}, {}
    if "n_nonintrusive" in group.columns:
        row["n_nonintrusive"] = group["n_nonintrusive"].max()
    for name in nonintrusive_scores(group.columns):
        title, scale = NONINTRUSIVE_TITLES[name], 100 if name == "wer" else 1
        row[f"{title}_in"] = scale * group[f"{name}_in"].mean()
        if not unprocessed:
            row[f"{title}_out"] = scale * group[name].mean()
        family = NONINTRUSIVE_FAMILIES[name]
        missing = group[group[f"{name}_in"].isna() | group[name].isna()]
        reasons.setdefault(family, set()).update(r for r in missing[f"{family}_reason"] if isinstance(r, str) and r)
        if name == "wer":  # the speakers whose test set has the text
            row["n_with_text"] = group.speaker[group[f"{name}_in"].notna()].nunique()
        if name == "wer" and "asr" in group.columns:
            row["ASR_eval"] = ",".join(sorted({a for names in group.asr.dropna() for a in str(names).split(",") if a}))
    row.update({f"{family}_reason": "; ".join(sorted(found)) for family, found in reasons.items()})
    return row


def summarize(speaker_means: pd.DataFrame, tts: pd.DataFrame) -> pd.DataFrame:
    """Mean over speakers of the per-speaker means, one row per condition."""
    rows = []
    for model, by_model in speaker_means.groupby("model", sort=False):
        # the unprocessed mixtures are the same for every condition: take the generalist's
        inputs = by_model[by_model.source == GENERALIST]
        rows.append(
            {"model": model, "condition": "unprocessed", "source": "-", "size": "-",
             "n_speakers": inputs.speaker.nunique(),
             "n_scored": inputs.speaker[inputs.sdr_in_db.notna()].nunique(),
             **{name: inputs[col].mean() for col, name in INPUT_METRIC_TITLES.items()},
             # no improvement by definition, where the mixtures could be scored at all
             "SDRi": 0.0 if inputs["sdr_in_db"].notna().any() else np.nan,
             **nonintrusive_summary(inputs, unprocessed=True)}
        )
        for (source, size), group in by_model.groupby(["source", "size"], sort=False):
            row = {"model": model, "condition": condition_name(source, size), "source": source,
                   "size": size, "n_speakers": group.speaker.nunique(),
                   # speakers with clean references: the reference metrics average over these
                   "n_scored": group.speaker[group.sdri_db.notna()].nunique()}
            row.update({name: group[col].mean() for col, name in METRIC_TITLES.items()})
            row["SDRi_sd"] = group["sdri_db"].std(ddof=1) if len(group) > 1 else np.nan
            row.update(nonintrusive_summary(group, unprocessed=False))
            scores = tts[tts.source == source] if len(tts) else tts
            if source != GENERALIST and len(scores):
                row["SECS_xvector"] = scores.secs_xvector.mean()
                row["SECS"] = scores.secs.mean()
                row["WER_pct"] = 100 * scores.wer.mean() if scores.wer.notna().any() else np.nan
                row["ASR"] = ",".join(sorted(scores.asr.unique()))
            rows.append(row)
    return pd.DataFrame(rows)


ALL = "all"
GROUP_TITLES = {ALL: "All speakers", "real": "Real speakers", "virtual": "Virtual speakers",
                "demo": "Demo speakers"}


def summarize_groups(speaker_means: pd.DataFrame, tts: pd.DataFrame, groups: dict[str, str]) -> pd.DataFrame:
    """`summarize` for all speakers (group "all") and, when the speakers are of several groups
    (real, virtual), for each group apart, as the challenge reported them."""
    names = [ALL] + (sorted(set(groups.values()), key=list(GROUP_TITLES).index)
                     if len(set(groups.values())) > 1 else [])
    frames = []
    for name in names:
        members = set(speaker_means.speaker) if name == ALL else {s for s, g in groups.items() if g == name}
        means = speaker_means[speaker_means.speaker.isin(members)]
        scores = tts[tts.speaker.isin(members)] if len(tts) else tts
        if len(means):
            frames.append(summarize(means, scores).assign(group=name))
    summary = pd.concat(frames, ignore_index=True)
    return summary[["group"] + [c for c in summary.columns if c != "group"]]


def add_result_arguments(parser) -> None:
    """The options of the steps that read the evaluation tables and TTS scores (aggregate, analyze)."""
    parser.add_argument("--eval", nargs="+", required=True, type=Path, metavar="CSV",
                        help="results/eval/MODEL/generalist/SPEAKER.csv or results/eval/MODEL/SOURCE/SIZE/SPEAKER.csv")
    parser.add_argument("--tts-scores", nargs="*", default=[], type=Path, metavar="JSON",
                        help="results/tts_scores/SOURCE/SPEAKER.json")
