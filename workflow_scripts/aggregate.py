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

from workflow_scripts.audio import atomic_write_text  # noqa: E402

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


def read_tts_scores(entries: list[dict]) -> pd.DataFrame:
    rows = []
    for entry in entries:
        path = Path(entry["path"])
        summary = json.loads(path.read_text())
        rows.append(
            {
                "source": entry["source"],
                "speaker": entry["speaker"],
                "secs": summary.get("secs_mean"),
                "wer": summary.get("wer"),
                "asr": summary.get("asr") or "none",
                "asr_reason": summary.get("asr_reason", ""),
                "n_utterances": summary.get("n_utterances"),
            }
        )
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
             **{name: inputs[col].mean() for col, name in INPUT_METRICS.items()}, "SDRi": 0.0}
        )
        for (source, size), group in by_model.groupby(["source", "size"], sort=False):
            row = {"model": model, "condition": condition_name(source, size), "source": source,
                   "size": size, "n_speakers": group.speaker.nunique()}
            row.update({name: group[col].mean() for col, name in METRICS.items()})
            row["SDRi_sd"] = group["sdri_db"].std(ddof=1) if len(group) > 1 else np.nan
            scores = tts[tts.source == source] if len(tts) else tts
            if source != GENERALIST and len(scores):
                row["SECS"] = scores.secs.mean()
                row["WER"] = scores.wer.mean() if scores.wer.notna().any() else np.nan
                row["ASR"] = ",".join(sorted(scores.asr.unique()))
            rows.append(row)
    return pd.DataFrame(rows)


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
    for model, group in summary.groupby("model", sort=False):
        parts += [f"## ConvTasNet {model}", ""]
        parts.append(
            markdown_table(
                group,
                [("condition", "Condition", -1), ("SDRi", "SDRi (dB)", 2), ("SDRi_sd", "SDRi sd", 2),
                 ("SDR", "SDR (dB)", 2), ("eSTOI", "eSTOI", 3), ("PESQ", "PESQ", 2),
                 ("SECS", "SECS", 3), ("WER", "WER", 3), ("n_speakers", "speakers", -1)],
            )
        )
        parts.append("")
    return "\n".join(parts)


def tts_markdown(tts: pd.DataFrame) -> str:
    if not len(tts):
        return "# TTS scores\n\nNo sources were scored.\n"
    overall = tts.groupby("source", sort=False).agg(
        SECS=("secs", "mean"), SECS_sd=("secs", "std"), WER=("wer", "mean"),
        ASR=("asr", lambda s: ",".join(sorted(set(s)))), speakers=("speaker", "nunique"),
    ).reset_index()
    parts = [
        "# TTS scores",
        "",
        "Per source (gt is the speakers' real speech), mean over speakers of the per-speaker means.",
        "",
        markdown_table(overall, [("source", "Source", -1), ("SECS", "SECS", 3), ("SECS_sd", "SECS sd", 3),
                                 ("WER", "WER", 3), ("ASR", "ASR", -1), ("speakers", "speakers", -1)]),
        "",
        "## Per speaker",
        "",
        markdown_table(tts, [("source", "Source", -1), ("speaker", "Speaker", -1), ("secs", "SECS", 3),
                             ("wer", "WER", 3), ("n_utterances", "utterances", -1)]),
        "",
    ]
    reasons = sorted({r for r in tts.asr_reason if isinstance(r, str) and r})
    if reasons:
        parts += ["WER not available: " + "; ".join(reasons), ""]
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
    parser.add_argument("--out-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    evals = read_eval_tables(parse_labelled(args.eval, ["model", "source", "size", "speaker"]))
    tts = read_tts_scores(parse_labelled(args.tts_scores, ["source", "speaker"]))
    speaker_means = per_speaker_means(evals)
    summary = summarize(speaker_means, tts)

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
