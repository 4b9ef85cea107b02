"""The results plots: every point belongs to a speaker a reader can tell apart (a marker per
speaker, or its id beside the point), and points that share a position stay visible."""

from __future__ import annotations

from itertools import cycle
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from workflow_scripts.scoring.results import GENERALIST, condition_name  # noqa: E402

MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "*", "h", "p"]


def speaker_styles(speakers: list[str]) -> dict[str, dict]:
    """A marker and a colour per speaker, distinct for up to 12 x 20 speakers."""
    colours = plt.get_cmap("tab20").colors
    return {s: {"marker": MARKERS[i % len(MARKERS)], "color": colours[(i * 7) % len(colours)]}
            for i, s in enumerate(speakers)}


def plot_sdri_by_condition(speaker_means: pd.DataFrame, path: Path) -> None:
    """Per model size: a bar per condition (mean over speakers) and each speaker's mean as a marker."""
    models = list(dict.fromkeys(speaker_means.model))
    speakers = list(dict.fromkeys(speaker_means.speaker))
    styles = speaker_styles(speakers)
    n_conditions = speaker_means.groupby(["source", "size"]).ngroups
    fig, axes = plt.subplots(1, len(models), figsize=(max(6.0, 1.1 * n_conditions + 2.5) * len(models), 4.8),
                             squeeze=False)
    for ax, model in zip(axes[0], models):
        group = speaker_means[speaker_means.model == model]
        names = [condition_name(s, z) for s, z in zip(group.source, group["size"])]
        labels = list(dict.fromkeys(names))
        offsets = dict(zip(speakers, np.linspace(-0.25, 0.25, len(speakers)) if len(speakers) > 1 else [0.0]))
        for i, label in enumerate(labels):
            values = group[[name == label for name in names]]
            ax.bar(i, values.sdri_db.mean(), width=0.7, color="tab:gray" if label == GENERALIST else "tab:blue",
                   alpha=0.35, zorder=1)
            for speaker, sdri in zip(values.speaker, values.sdri_db):
                ax.scatter(i + offsets[speaker], sdri, s=28, zorder=3, edgecolors="black", linewidths=0.4,
                           **styles[speaker])
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.set_xlabel("condition (fine-tuning speech and its size)")
        ax.set_ylabel("SDRi (dB)")
        ax.set_title(f"ConvTasNet {model}: bar = mean over speakers")
        ax.axhline(0, color="black", lw=0.5)
        ax.grid(axis="y", alpha=0.3)
    scored = set(speaker_means.speaker[speaker_means.sdri_db.notna()])
    handles = [Line2D([], [], linestyle="", markeredgecolor="black", markeredgewidth=0.4, markersize=6,
                      label=s, **styles[s]) for s in speakers if s in scored]
    fig.legend(handles=handles, title="speaker", loc="center right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1 - min(0.25, 1.1 / fig.get_figwidth()), 1))
    save_figure(fig, path)


def plot_secs_vs_sdri(speaker_means: pd.DataFrame, tts: pd.DataFrame, path: Path) -> None:
    """Per model size: each (speaker, source, data size)'s SDRi gain over the generalist against
    the speaker similarity of the source's speech (x-vector where the run has it). Colour: source;
    marker: data size (hollow, smaller for larger sizes, so sizes on one spot stay visible);
    each speaker's id beside its points."""
    secs = "secs_xvector" if len(tts) and tts.secs_xvector.notna().any() else "secs"
    secs_title = "x-vector" if secs == "secs_xvector" else "resemblyzer"
    generalist = speaker_means[speaker_means.source == GENERALIST][["model", "speaker", "sdri_db"]]
    merged = (
        speaker_means[speaker_means.source != GENERALIST]
        .merge(generalist, on=["model", "speaker"], suffixes=("", "_generalist"))
        .merge(tts[["source", "speaker", secs]] if len(tts) else pd.DataFrame(columns=["source", "speaker", secs]),
               on=["source", "speaker"], how="inner")
        .dropna(subset=[secs, "sdri_db"])
    )
    merged["gain"] = merged.sdri_db - merged.sdri_db_generalist
    models = list(dict.fromkeys(speaker_means.model))
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 4.8), squeeze=False)
    sources = list(dict.fromkeys(merged.source))
    sizes = list(dict.fromkeys(merged["size"]))
    colours = dict(zip(sources, cycle(plt.get_cmap("tab10").colors)))
    size_markers = {z: (MARKERS[i % len(MARKERS)], 90 / (1 + 0.6 * i)) for i, z in enumerate(sizes)}
    for ax, model in zip(axes[0], models):
        rows = merged[merged.model == model]
        for (source, size), group in rows.groupby(["source", "size"], sort=False):
            marker, area = size_markers[size]
            ax.scatter(group[secs], group.gain, s=area, marker=marker, facecolors="none",
                       edgecolors=[colours[source]], linewidths=1.3, zorder=3)
        # each speaker's id beside its highest point; ids that would land on one spot are joined
        labels: dict[tuple, list[str]] = {}
        for (source, speaker), group in rows.groupby(["source", "speaker"], sort=False):
            spot = (source, round(float(group[secs].iloc[0]), 3), round(float(group.gain.max()), 1))
            labels.setdefault(spot, []).append(speaker)
        for (source, x, y), names in labels.items():
            ax.annotate(", ".join(names), (x, y), textcoords="offset points", xytext=(6, 4), fontsize=7,
                        color=colours[source])
        ax.set_xlabel(f"SECS {secs_title} of the fine-tuning speech to the enrollment clip (cosine)")
        ax.set_ylabel("SDRi gain over the generalist (dB)")
        ax.set_title(f"ConvTasNet {model}: voice similarity vs personalization gain")
        ax.axhline(0, color="black", lw=0.5)
        ax.grid(alpha=0.3)
        if not len(rows):
            ax.text(0.5, 0.5, "no scored speech", transform=ax.transAxes, ha="center")
    handles = [Line2D([], [], linestyle="", marker="s", color=colours[s], label=s) for s in sources]
    handles += [Line2D([], [], linestyle="", marker=m, markerfacecolor="none", markeredgecolor="black",
                       label=f"size {z}") for z, (m, _) in size_markers.items()]
    if handles:
        fig.legend(handles=handles, loc="center right", fontsize=8, title="source / data size")
        fig.tight_layout(rect=(0, 0, 1 - min(0.3, 1.5 / fig.get_figwidth()), 1))
    else:
        fig.tight_layout()
    save_figure(fig, path)


def save_figure(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
