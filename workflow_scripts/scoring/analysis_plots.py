"""The analysis plots: the gain against each TTS score (Q1) and SDRi against minutes of
training speech (Q3). Each reads without the text: axis labels with units, a legend, a title that
says what one point is."""

from __future__ import annotations

from itertools import cycle
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from workflow_scripts.scoring.analysis import GENERALIST, GT, POOLED, TTS_SCORES  # noqa: E402
from workflow_scripts.scoring.plots import MARKERS, save_figure  # noqa: E402

MIN_CURVE_SIZES = 3  # data sizes of a source drawn as a line; fewer are points


def source_colours(sources) -> dict[str, tuple]:
    colours = cycle(plt.get_cmap("tab10").colors)
    return {source: next(colours) for source in sources}


def signed(value: float) -> str:
    return "n/a" if value is None or np.isnan(value) else f"{value:+.2f}"


def rho_text(row) -> str:
    """Two lines: Spearman's rho with its interval, and its within-speaker version (the reason
    where there is no interval, or no rho)."""
    def one(rho, low, high, reason):
        if np.isnan(rho):
            return f"n/a ({reason})"
        interval = f"[{signed(low)}, {signed(high)}]" if np.isfinite(low) else f"(no interval: {reason})"
        return f"{signed(rho)} {interval}"
    return (f"ρ {one(row.rho, row.low, row.high, row.reason)}\n"
            f"within speakers ρ {one(row.rho_within, row.low_within, row.high_within, row.reason_within)}")


def plot_tts_vs_gain(rows: pd.DataFrame, correlations: pd.DataFrame, path: Path) -> None:
    """One panel per TTS score the run has: each (speaker, source, data size, model size)'s SDRi
    gain over the generalist against the score of the source's speech; colour: source, marker:
    model size; the line has the speaker-centred slope, through the panel's mean."""
    scores = [s for s in TTS_SCORES if rows[s].notna().any()] if len(rows) else []
    ncols = min(3, max(1, len(scores)))
    nrows = max(1, -(-len(scores) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.6 * ncols, 4.6 * nrows + 0.9), squeeze=False)
    colours = source_colours(dict.fromkeys(rows.source)) if len(rows) else {}
    models = list(dict.fromkeys(rows.model)) if len(rows) else []
    markers = dict(zip(models, MARKERS))
    for ax, score in zip(axes.flat, scores):
        title, scale = TTS_SCORES[score]
        subset = rows[rows[score].notna() & rows.gain_db.notna()]
        for (source, model), group in subset.groupby(["source", "model"], sort=False):
            ax.scatter(group[score] * scale, group.gain_db, s=34, marker=markers[model], color=colours[source],
                       edgecolors="black", linewidths=0.4, alpha=0.85, zorder=3)
        pooled = correlations[(correlations.score == score) & (correlations.model.isin([POOLED, models[0]]))]
        row = pooled.sort_values("model", key=lambda m: m != POOLED).iloc[0]
        slope = row.slope_within / scale
        if np.isfinite(slope):  # the common within-speaker slope, through each speaker's mean
            for _, own in subset.groupby(["speaker", "model"], sort=False):
                x = np.array([own[score].min(), own[score].max()]) * scale
                if x[1] > x[0]:
                    centre_x, centre_y = own[score].mean() * scale, own.gain_db.mean()
                    ax.plot(x, centre_y + slope * (x - centre_x), color="black", lw=1.0, ls="--", zorder=2)
        ax.axhline(0, color="grey", lw=0.6)
        ax.set_xlabel(f"{title} of the fine-tuning speech")
        ax.set_ylabel("SDRi gain over the generalist (dB)")
        ax.set_title(f"{title.split(' (')[0]}\n{rho_text(row)}", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(scores):]:
        ax.axis("off")
    if not scores:
        axes.flat[0].text(0.5, 0.5, "no TTS score in this run", ha="center", transform=axes.flat[0].transAxes)
    handles = [Line2D([], [], ls="", marker="o", color=c, markeredgecolor="black", label=s) for s, c in colours.items()]
    if len(models) > 1:
        handles += [Line2D([], [], ls="", marker=markers[m], color="grey", label=f"ConvTasNet {m}") for m in models]
    handles.append(Line2D([], [], color="black", ls="--", lw=1.0,
                          label="within-speaker fit: one slope for all speakers\n(gain and score centred per speaker),"
                                " drawn through each speaker's points"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=8,
               title="fine-tuning source (gt: real speech)", title_fontsize=8)
    fig.suptitle("Which TTS score predicts the personalization gain?  One point per (speaker, source,"
                 " data size, model size); ρ: Spearman, [95% interval] resampling speakers", fontsize=10)
    fig.tight_layout(rect=(0, 0.9 / fig.get_figheight(), 1, 1))
    save_figure(fig, path)


def plot_datasize(curve: pd.DataFrame, speaker_points: pd.DataFrame, path: Path) -> None:
    """Per model size: SDRi against minutes of training speech per speaker (log scale). A source
    with 3 or more data sizes is a line (mean over speakers, 95% interval as bars where there are
    enough speakers), with each speaker's own line faint behind it; gt is drawn the same way, as
    points when it has fewer sizes; the generalist is the dashed level."""
    models = list(dict.fromkeys(curve.model))
    fig, axes = plt.subplots(1, len(models), figsize=(6.8 * len(models), 5.0), squeeze=False)
    sources = [s for s in dict.fromkeys(curve.source) if s != GENERALIST]
    colours = source_colours(sources)
    for ax, model in zip(axes[0], models):
        rows = curve[curve.model == model]
        notes = sorted({r for r in rows.reason if isinstance(r, str) and r})
        for source in sources:
            points = rows[rows.source == source].sort_values("minutes")
            if points.empty:
                continue
            as_line = len(points) >= MIN_CURVE_SIZES
            own = speaker_points[(speaker_points.model == model) & (speaker_points.source == source)]
            for _, speaker in own.sort_values("minutes").groupby("speaker", sort=False):
                ax.plot(speaker.minutes, speaker.sdri_db, color=colours[source], lw=0.7, alpha=0.25,
                        ls="-" if as_line else "none", marker=".", ms=3)
            errors = np.array([points.sdri_db - points.low, points.high - points.sdri_db])
            ax.errorbar(points.minutes, points.sdri_db, yerr=None if np.isnan(errors).all() else errors,
                        color=colours[source], marker="*" if source == GT else "o", ms=9 if source == GT else 6,
                        ls="-" if as_line else "none", lw=2, capsize=4, label=f"{source} (mean over speakers)")
            for point in points.itertuples(index=False):
                ax.annotate(point.size, (point.minutes, point.sdri_db), textcoords="offset points",
                            xytext=(5, -11), fontsize=7, color=colours[source])
        generalist = rows[rows.source == GENERALIST]
        if len(generalist):
            ax.axhline(generalist.sdri_db.iloc[0], color="black", ls="--", lw=1,
                       label="generalist (no fine-tuning)")
        ax.set_xscale("log")
        plain = ticker.FuncFormatter(lambda value, _: f"{value:g}")
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(plain)
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.set_xlabel("training speech per speaker (minutes, log scale; mean over speakers)")
        ax.set_ylabel("SDRi on the speaker's test mixtures (dB)")
        no_bars = f"\nno interval bars: {'; '.join(notes)}" if notes else "\nbars: 95% interval over speakers"
        ax.set_title(f"ConvTasNet {model}: SDRi against the amount of training speech{no_bars}", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    save_figure(fig, path)
