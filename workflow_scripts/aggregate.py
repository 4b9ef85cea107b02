"""Aggregate step: the paper-style results table and plots.

Metrics are averaged per speaker first, then over speakers (as the challenge
did). Rows: the unprocessed mixtures, the generalist, and every fine-tuning
condition (gt and each TTS system at each data size), per model size; TTS
rows also carry the speaker similarity (SECS) and WER of their speech.

    python -m workflow_scripts.aggregate \
        --eval tiny:generalist:-:spk01=results/eval/tiny/generalist/spk01.csv ... \
        --tts-scores worldclone:spk01=results/tts_scores/worldclone/spk01.json ... \
        --out-dir results
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from workflow_scripts.files.audio import atomic_write_text  # noqa: E402
from workflow_scripts.runtime.logs import setup_logging

log = logging.getLogger("aggregate")

# per-utterance column -> table column
METRICS = {"sdri_db": "SDRi", "sdr_db": "SDR", "estoi": "eSTOI", "pesq": "PESQ"}
INPUT_METRICS = {"sdr_in_db": "SDR", "estoi_in": "eSTOI", "pesq_in": "PESQ"}
GENERALIST = "generalist"


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


def read_eval_tables(entries: list[dict]) -> pd.DataFrame:
    """Concatenate per-utterance evaluation tables with their labels."""
    frames = []
    for entry in entries:
        path = Path(entry["path"])
        if not path.is_file():
            raise FileNotFoundError(f"{path}: evaluation table not found")
        table = pd.read_csv(path)
        missing = [c for c in list(METRICS) + list(INPUT_METRICS) if c not in table.columns]
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


def per_speaker_means(evals: pd.DataFrame) -> pd.DataFrame:
    """Mean of each metric per (model, source, size, speaker), NaN ignored."""
    columns = list(METRICS) + list(INPUT_METRICS)
    grouped = evals.groupby(["model", "source", "size", "speaker"], sort=False)[columns]
    means = grouped.mean().reset_index()
    means["n_utterances"] = grouped.size().values
    means["n_missing"] = grouped.apply(lambda g: int(g.isna().sum().sum())).values
    return means


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
             **{name: inputs[col].mean() for col, name in INPUT_METRICS.items()},
             # no improvement by definition, where the mixtures could be scored at all
             "SDRi": 0.0 if inputs["sdr_in_db"].notna().any() else np.nan}
        )
        for (source, size), group in by_model.groupby(["source", "size"], sort=False):
            row = {"model": model, "condition": condition_name(source, size), "source": source,
                   "size": size, "n_speakers": group.speaker.nunique(),
                   # speakers with clean references: the reference metrics average over these
                   "n_scored": group.speaker[group.sdri_db.notna()].nunique()}
            row.update({name: group[col].mean() for col, name in METRICS.items()})
            row["SDRi_sd"] = group["sdri_db"].std(ddof=1) if len(group) > 1 else np.nan
            scores = tts[tts.source == source] if len(tts) else tts
            if source != GENERALIST and len(scores):
                row["SECS"] = scores.secs.mean()
                row["WER"] = scores.wer.mean() if scores.wer.notna().any() else np.nan
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


def parse_groups(items: list[str]) -> dict[str, str]:
    """`speaker=group` items -> {speaker: group}."""
    groups = {}
    for item in items:
        speaker, sep, group = item.partition("=")
        if not sep or not speaker or not group:
            raise ValueError(f"expected SPEAKER=GROUP, got {item!r}")
        groups[speaker] = group
    return groups


def fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def markdown_table(frame: pd.DataFrame, columns: list[tuple[str, str, int]]) -> str:
    header = "| " + " | ".join(title for _, title, _ in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    lines = [header, rule]
    for _, row in frame.iterrows():
        cells = []
        for key, _, digits in columns:
            value = row.get(key)
            cells.append(fmt(value, digits) if digits >= 0 else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_markdown(summary: pd.DataFrame, tts: pd.DataFrame) -> str:
    asr_names = sorted(set(tts.asr)) if len(tts) else []
    parts = [
        "# genda-pse results",
        "",
        "Mean per speaker, then over speakers. SDR is the scale-dependent SNR of zero-mean signals;",
        "SDRi is its improvement over the unprocessed mixture; eSTOI (pystoi, extended) and wide-band",
        "PESQ are computed on full utterances. SECS: resemblyzer cosine similarity of the source's",
        "speech to the enrollment clip. WER: word error rate of the source's speech against its text,",
        f"transcribed by: {', '.join(asr_names) or 'n/a'}. SDRi sd: standard deviation over speakers.",
        "",
    ]
    if "group" not in summary.columns:
        summary = summary.assign(group=ALL)
    several_groups = summary.group.nunique() > 1
    if "n_scored" in summary.columns:
        summary = summary.assign(speakers=[
            f"{n} ({k} with references)" if k < n else str(n)
            for n, k in zip(summary.n_speakers, summary.n_scored.fillna(summary.n_speakers).astype(int))])
    else:
        summary = summary.assign(speakers=summary.n_speakers.astype(str))
    for model, by_model in summary.groupby("model", sort=False):
        parts += [f"## ConvTasNet {model}", ""]
        for group_name, group in by_model.groupby("group", sort=False):
            if several_groups:
                parts += [f"### {GROUP_TITLES.get(group_name, group_name)}", ""]
            parts.append(
                markdown_table(
                    group,
                    [("condition", "Condition", -1), ("SDRi", "SDRi (dB)", 2), ("SDRi_sd", "SDRi sd", 2),
                     ("SDR", "SDR (dB)", 2), ("eSTOI", "eSTOI", 3), ("PESQ", "PESQ", 2),
                     ("SECS", "SECS", 3), ("WER", "WER", 3), ("speakers", "speakers", -1)],
                )
            )
            parts.append("")
            if group[["SDRi", "SDR", "eSTOI", "PESQ"]].isna().all().all():
                parts += [("Reference metrics n/a: not applicable, these speakers' test mixtures have no"
                           " clean reference (they are enhanced, and exported for the challenge)."), ""]
    return "\n".join(parts)


# TTS table: (score column, title, digits)
TTS_TABLE = [("secs", "SECS (resemblyzer)", 3), ("secs_xvector", "SECS (x-vector)", 3), ("wer", "WER", 3),
             ("utmos", "UTMOS", 2), ("dnsmos_ovrl", "DNSMOS OVRL", 2), ("distillmos", "DistillMOS", 2)]
TTS_DETAIL = [("wer_mean_per_utterance", "WER (mean over utterances)", 3), ("dnsmos_sig", "DNSMOS SIG", 2), ("dnsmos_bak", "DNSMOS BAK", 2), ("dnsmos_p808", "DNSMOS P.808", 2)]


def short_reason(reason: str) -> str:
    """The first clause of a reason, for a table cell."""
    return reason.split(" (")[0].split(": ")[0].split("; ")[0].strip()


def score_cell(rows: pd.DataFrame, column: str, digits: int) -> str:
    """Mean over `rows` of a score, or "n/a: why" when no row has it."""
    values = rows[column].dropna()
    if len(values):
        return fmt(float(values.mean()), digits)
    reasons = sorted({short_reason(r) for r in rows[f"{column}_reason"] if isinstance(r, str) and r})
    return "n/a: " + "; ".join(reasons) if reasons else "n/a"


def tts_rows_table(groups, label_titles: list[str], scores, per_speaker: bool = False) -> str:
    """A markdown table with one row per group: labels, each score's cell, the ASR, and the number
    of speakers (or, per speaker, of utterances)."""
    count_title = "utterances" if per_speaker else "speakers"
    header = label_titles + [title for _, title, _ in scores] + ["ASR", count_title]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for labels, rows in groups:
        labels = labels if isinstance(labels, tuple) else (labels,)
        count = int(rows.n_utterances.fillna(0).sum()) if per_speaker else rows.speaker.nunique()
        cells = [str(label) for label in labels]
        cells += [score_cell(rows, column, digits) for column, _, digits in scores]
        cells += [",".join(sorted(set(rows.asr))), str(count)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tts_markdown(tts: pd.DataFrame) -> str:
    """The TTS table as the paper reports it (per system, mean over speakers), per speaker below,
    then the models and, in full, the reason for every score that is missing."""
    if not len(tts):
        return "# TTS scores\n\nNo sources were scored.\n"
    parts = [
        "# TTS scores",
        "",
        "Per source (gt is the speakers' real speech): each score averaged per speaker, then over speakers.",
        "SECS: cosine similarity of each utterance's speaker embedding to the enrollment clip's. WER: corpus",
        "WER per speaker (Whisper's English normaliser on both sides), by the ASR named. UTMOS, DNSMOS,",
        "DistillMOS: predicted MOS (1-5). n/a: the score could not be computed here, and why.",
        "",
        tts_rows_table(tts.groupby("source", sort=False), ["Source"], TTS_TABLE),
        "",
        "## Per speaker",
        "",
        tts_rows_table(tts.groupby(["source", "speaker"], sort=False), ["Source", "Speaker"],
                       TTS_TABLE + TTS_DETAIL, per_speaker=True),
        "",
    ]
    models = []
    for key, title in (("secs_resemblyzer_model", "SECS (resemblyzer)"), ("secs_xvector_model", "SECS (x-vector)"),
                       ("asr", "ASR"), ("text_normalizer", "text normaliser"), ("utmos_model", "UTMOS"),
                       ("dnsmos_model", "DNSMOS"), ("distillmos_model", "DistillMOS")):
        names = sorted({n for n in tts.get(key, pd.Series(dtype=object)) if isinstance(n, str) and n and n != "none"})
        if names:
            models.append(f"- {title}: {', '.join(names)}")
    if models:
        parts += ["## Models", "", *models, ""]
    missing = []
    for column, title, _ in TTS_TABLE:
        for reason, rows in tts[tts[column].isna()].groupby(f"{column}_reason", sort=False):
            if reason:
                pairs = ", ".join(f"{r.source}/{r.speaker}" for r in rows.itertuples())
                missing.append(f"- {title} ({pairs}): {reason}")
    if missing:
        parts += ["## Not available", "", *missing, ""]
    return "\n".join(parts)


def plot_sdri_by_condition(speaker_means: pd.DataFrame, path: Path) -> None:
    models = list(dict.fromkeys(speaker_means.model))
    fig, axes = plt.subplots(1, len(models), figsize=(max(6, 1.3 * speaker_means.groupby(
        ["source", "size"]).ngroups) * len(models), 4.5), squeeze=False)
    for ax, model in zip(axes[0], models):
        group = speaker_means[speaker_means.model == model]
        labels = list(dict.fromkeys(condition_name(s, z) for s, z in zip(group.source, group["size"])))
        for i, label in enumerate(labels):
            values = group[[condition_name(s, z) == label for s, z in zip(group.source, group["size"])]]
            ax.bar(i, values.sdri_db.mean(), color="tab:gray" if label == GENERALIST else "tab:blue",
                   alpha=0.6)
            ax.scatter(np.full(len(values), i) + np.linspace(-0.15, 0.15, len(values)), values.sdri_db,
                       color="black", s=12, zorder=3)
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.set_ylabel("SDRi (dB)")
        ax.set_title(f"ConvTasNet {model}: bars = mean over speakers, dots = speakers")
        ax.axhline(0, color="black", lw=0.5)
    fig.tight_layout()
    save_figure(fig, path)


def plot_secs_vs_sdri(speaker_means: pd.DataFrame, tts: pd.DataFrame, path: Path) -> None:
    """Per speaker and condition: SECS of the fine-tuning speech vs the SDRi gained over the generalist."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    generalist = speaker_means[speaker_means.source == GENERALIST][["model", "speaker", "sdri_db"]]
    merged = (
        speaker_means[speaker_means.source != GENERALIST]
        .merge(generalist, on=["model", "speaker"], suffixes=("", "_generalist"))
        .merge(tts[["source", "speaker", "secs"]], on=["source", "speaker"], how="inner")
    )
    for (model, source, size), group in merged.groupby(["model", "source", "size"], sort=False):
        ax.scatter(group.secs, group.sdri_db - group.sdri_db_generalist, label=f"{model} {source} {size}", s=25)
    ax.set_xlabel("SECS of the fine-tuning speech to the enrollment clip")
    ax.set_ylabel("SDRi gain over the generalist (dB)")
    ax.set_title("Per speaker: voice similarity vs personalization gain")
    ax.axhline(0, color="black", lw=0.5)
    if len(merged):
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def save_figure(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


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
