"""The results as a reader sees them: markdown tables (summary.md, tts_summary.md) and plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from workflow_scripts.scoring.results import ALL, GENERALIST, GROUP_TITLES, condition_name  # noqa: E402


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
TTS_DETAIL = [("wer_mean_per_utterance", "WER (mean over utterances)", 3), ("dnsmos_sig", "DNSMOS SIG", 2),
              ("dnsmos_bak", "DNSMOS BAK", 2), ("dnsmos_p808", "DNSMOS P.808", 2)]


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
