"""The analysis behind the paper's open questions, as tables: built here from the per-utterance
evaluation tables (scoring.results) and the TTS scores, written by scoring.analysis_tables and drawn
by scoring.analysis_plots. Every statistic is one of scoring.statistics.

- significance: per model size and condition, each metric's mean over speakers (of each speaker's
  mean) with its bootstrap interval; each condition against the generalist and against gt on the
  same speakers: the mean difference with its interval, Wilcoxon over speakers and over utterances
  (the same test mixture's pair), Holm-corrected within a model size and view;
- tts_vs_gain (Q1): for every (speaker, source, data size, model size), the SDRi gain over the
  generalist against each TTS score of the source's speech: Spearman's rho per model size and
  pooled, with intervals resampling speakers, and the speaker-centred view;
- cross (Q2): a model fine-tuned on one speaker's data enhancing another speaker's test mixtures
  (crossed) against that speaker's own model of the same source and size (matched);
- datasize (Q3): SDRi against the minutes of training speech of each data size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from workflow_scripts.files.folders import read_speech_folder
from workflow_scripts.scoring import statistics as st
from workflow_scripts.scoring.results import GENERALIST, condition_name, read_eval_tables
from workflow_scripts.training.data import nested_subsets

GT = "gt"
POOLED = "all"  # the model-size label of rows pooled over model sizes

# per-utterance column -> (title with unit, digits, scale): the reference metrics, then the
# non-intrusive scores of the enhanced speech where the evaluation tables have them
METRICS = {
    "sdri_db": ("SDRi (dB)", 2, 1),
    "estoi": ("eSTOI (0-1)", 3, 1),
    "pesq": ("PESQ WB (1-4.6)", 2, 1),
    "dnsmos_ovrl": ("DNSMOS OVRL (1-5)", 2, 1),
    "dnsmos_sig": ("DNSMOS SIG (1-5)", 2, 1),
    "dnsmos_bak": ("DNSMOS BAK (1-5)", 2, 1),
    "dnsmos_p808": ("DNSMOS P.808 (1-5)", 2, 1),
    "distillmos": ("DistillMOS (1-5)", 2, 1),
    "wer": ("WER (%)", 1, 100),
}
REFERENCE_METRICS = ("sdri_db", "estoi", "pesq")
LOWER_IS_BETTER = ("wer",)

# per-speaker TTS score (scoring.results.read_tts_scores) -> (title with unit, scale)
TTS_SCORES = {
    "secs_xvector": ("SECS x-vector (cos)", 1),
    "secs": ("SECS resemblyzer (cos)", 1),
    "wer": ("WER (%)", 100),
    "utmos": ("UTMOS (1-5)", 1),
    "dnsmos_ovrl": ("DNSMOS OVRL (1-5)", 1),
    "distillmos": ("DistillMOS (1-5)", 1),
}
TTS_TITLES = {"secs_xvector": "SECS x-vector", "secs": "SECS resemblyzer", "wer": "WER", "utmos": "UTMOS",
              "dnsmos_ovrl": "DNSMOS", "distillmos": "DistillMOS"}


def metric_title(column: str) -> tuple[str, int, float]:
    """(title with unit, digits, scale) of a metric column (a DNSMOS column not listed too)."""
    if column in METRICS:
        return METRICS[column]
    return f"DNSMOS {column.removeprefix('dnsmos_').upper()} (1-5)", 2, 1


def metrics_present(evals: pd.DataFrame) -> list[str]:
    """The reference metrics, then every non-intrusive score that the tables have for some
    utterance (a `dnsmos_*` column of the enhanced speech, `distillmos`, `wer`)."""
    extra = [c for c in METRICS if c not in REFERENCE_METRICS and c in evals.columns]
    extra += sorted(c for c in evals.columns
                    if c.startswith("dnsmos_") and not c.endswith("_in") and c not in METRICS)
    present = [c for c in extra if pd.to_numeric(evals[c], errors="coerce").notna().any()]
    return list(REFERENCE_METRICS) + present


KEYS = ["model", "source", "size", "speaker"]


def speaker_means(evals: pd.DataFrame, metrics: list[str], keys: list[str] = KEYS) -> pd.DataFrame:
    """Each metric's mean over a speaker's utterances, per (model, source, size, speaker) (and
    training speaker, for crossed tables: `keys`)."""
    values = evals[keys].copy()
    for metric in metrics:
        values[metric] = pd.to_numeric(evals[metric], errors="coerce")
    means = values.groupby(keys, sort=False)[metrics].mean().reset_index()
    if "wer" in metrics and "reference_words" in evals.columns:
        # a speaker's WER is its corpus WER: all word errors over all reference words
        words = pd.to_numeric(evals["reference_words"], errors="coerce").where(values["wer"].notna())
        errors = (values["wer"] * words).groupby([values[k] for k in keys], sort=False).sum(min_count=1)
        totals = words.groupby([values[k] for k in keys], sort=False).sum(min_count=1)
        means["wer"] = (errors / totals).to_numpy()
    return means


def conditions_of(means: pd.DataFrame, sizes: dict[str, tuple[int, int]] | None = None) -> list[tuple[str, str]]:
    """(source, size) of every condition: the generalist first, then each source in table order,
    its sizes by their training utterances where `sizes` gives them (else in table order)."""
    pairs = list(dict.fromkeys(zip(means.source, means["size"])))
    sources = list(dict.fromkeys(source for source, _ in pairs))
    sizes = sizes or {}
    return sorted(pairs, key=lambda pair: (pair[0] != GENERALIST, sources.index(pair[0]),
                                           sizes.get(pair[1], (0, 0))[0]))


def references(source: str, size: str, conditions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """What a condition is tested against: the generalist, and gt at the same data size (at its
    last listed size where gt has not that one); gt itself only against the generalist."""
    if source == GENERALIST:
        return []
    refs = [(GENERALIST, "-")]
    gt_sizes = [z for s, z in conditions if s == GT]
    if source != GT and gt_sizes:
        refs.append((GT, size if size in gt_sizes else gt_sizes[-1]))
    return refs


def select(frame: pd.DataFrame, model: str, source: str, size: str) -> pd.DataFrame:
    return frame[(frame.model == model) & (frame.source == source) & (frame["size"] == size)]


def paired_speakers(means: pd.DataFrame, model: str, a: tuple, b: tuple, metric: str) -> pd.DataFrame:
    """The speakers' means of a metric under conditions a and b, speakers having both."""
    left = select(means, model, *a)[["speaker", metric]]
    right = select(means, model, *b)[["speaker", metric]]
    return left.merge(right, on="speaker", suffixes=("_a", "_b"))


def paired_utterances(evals: pd.DataFrame, model: str, a: tuple, b: tuple, metric: str,
                      speakers) -> pd.DataFrame:
    """The same test mixtures' scores under conditions a and b, for the given speakers."""
    columns = ["speaker", "mixture_id", metric]
    left = select(evals, model, *a)
    right = select(evals, model, *b)
    left, right = left[left.speaker.isin(speakers)][columns], right[right.speaker.isin(speakers)][columns]
    return left.merge(right, on=["speaker", "mixture_id"], suffixes=("_a", "_b"))


def difference_row(a_values, b_values, a_utterances, b_utterances, resamples: int, seed: int,
                   what: str = "speakers") -> dict:
    """The mean difference a - b with its interval, and Wilcoxon over `what` and over utterances."""
    difference = st.bootstrap_mean(np.asarray(a_values, float) - np.asarray(b_values, float),
                                   resamples, seed, what=what)
    by_unit = st.wilcoxon_paired(a_values, b_values, what=what)
    # utterances of fewer than 5 speakers (pairs) are not a sample to test on either
    few = st.too_few(by_unit.n, what)
    scored = np.isfinite(np.asarray(a_utterances, float)) & np.isfinite(np.asarray(b_utterances, float))
    by_utterance = (st.TestResult(np.nan, np.nan, int(scored.sum()), few) if few
                    else st.wilcoxon_paired(a_utterances, b_utterances, what="utterances"))
    return {"n": difference.n, "difference": difference.estimate, "low": difference.low,
            "high": difference.high, "interval_reason": difference.reason,
            "p_units": by_unit.p, "units_reason": by_unit.reason,
            "n_utterances": by_utterance.n, "p_utterances": by_utterance.p,
            "utterances_reason": by_utterance.reason}


def add_holm(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Holm-adjusted `p_units` and `p_utterances`, one family per group of `by` (a model size
    and metric: every comparison of that metric) and view."""
    frame = frame.copy()
    for view in ("p_units", "p_utterances"):
        frame[f"{view}_holm"] = np.nan
        for _, group in frame.groupby(by, sort=False):
            frame.loc[group.index, f"{view}_holm"] = st.holm(group[view].to_numpy())
    return frame


def significance(evals: pd.DataFrame, metrics: list[str], resamples: int = st.RESAMPLES,
                 seed: int = st.SEED, sizes: dict[str, tuple[int, int]] | None = None,
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(means, comparisons): each condition's mean over speakers with its interval, per model
    size and metric; each condition against its references (`references`), Holm-corrected within
    a model size, metric and view. `sizes` orders the data sizes."""
    means = speaker_means(evals, metrics)
    mean_rows, comparison_rows = [], []
    for model in dict.fromkeys(means.model):
        conditions = conditions_of(means[means.model == model], sizes)
        for source, size in conditions:
            rows = select(means, model, source, size)
            for metric in metrics:
                interval = st.bootstrap_mean(rows[metric], resamples, seed)
                mean_rows.append({"model": model, "condition": condition_name(source, size), "source": source,
                                  "size": size, "metric": metric, "n_speakers": interval.n,
                                  "mean": interval.estimate, "low": interval.low, "high": interval.high,
                                  "reason": interval.reason})
            for ref in references(source, size, conditions):
                for metric in metrics:
                    pairs = paired_speakers(means, model, (source, size), ref, metric).dropna()
                    utterances = paired_utterances(evals, model, (source, size), ref, metric, pairs.speaker)
                    row = difference_row(pairs[f"{metric}_a"], pairs[f"{metric}_b"],
                                         pd.to_numeric(utterances[f"{metric}_a"], errors="coerce"),
                                         pd.to_numeric(utterances[f"{metric}_b"], errors="coerce"),
                                         resamples, seed)
                    comparison_rows.append({"model": model, "condition": condition_name(source, size),
                                            "source": source, "size": size,
                                            "reference": condition_name(*ref), "metric": metric, **row})
    comparisons = pd.DataFrame(comparison_rows)
    if len(comparisons):
        comparisons = add_holm(comparisons, ["model", "metric"])
    return pd.DataFrame(mean_rows), comparisons


# ---- Q1: which TTS score predicts the gain --------------------------------------------------


def gain_rows(means: pd.DataFrame, tts: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, source, size, speaker) fine-tuned: its SDRi gain over the generalist on
    the same speaker and model size (dB), and the TTS scores of the source's speech."""
    generalist = means[means.source == GENERALIST][["model", "speaker", "sdri_db"]]
    rows = (means[means.source != GENERALIST][["model", "source", "size", "speaker", "sdri_db"]]
            .merge(generalist, on=["model", "speaker"], suffixes=("", "_generalist")))
    rows["gain_db"] = rows.sdri_db - rows.sdri_db_generalist
    scores = [c for c in TTS_SCORES if len(tts) and c in tts.columns]
    if scores:
        rows = rows.merge(tts[["source", "speaker", *scores]], on=["source", "speaker"], how="left")
    for score in TTS_SCORES:
        if score not in rows.columns:
            rows[score] = np.nan
    return rows


def score_reasons(tts: pd.DataFrame, score: str) -> str:
    """Why a TTS score is missing for every source (the scoring's own reasons), or ""."""
    column = f"{score}_reason"
    if not len(tts) or column not in tts.columns:
        return "not scored in this run"
    reasons = sorted({r for r in tts[column] if isinstance(r, str) and r})
    return "; ".join(reasons) or "not scored in this run"


def tts_gain_correlations(rows: pd.DataFrame, tts: pd.DataFrame, resamples: int = st.RESAMPLES,
                          seed: int = st.SEED) -> pd.DataFrame:
    """Per TTS score and model size (and pooled over model sizes): Spearman's rho of score and
    gain with its interval resampling speakers, and the same with both centred per speaker (per
    speaker and model size when pooled). A score no source has gets one row with the reason."""
    models = list(dict.fromkeys(rows.model))
    out = []
    for score in TTS_SCORES:
        if rows[score].notna().sum() == 0:
            out.append({"score": score, "model": POOLED, "absent_reason": score_reasons(tts, score)})
            continue
        for model in models + ([POOLED] if len(models) > 1 else []):
            subset = rows if model == POOLED else rows[rows.model == model]
            subset = subset[subset[score].notna() & subset.gain_db.notna()]
            overall = st.spearman_interval(subset[score], subset.gain_db, clusters=subset.speaker,
                                           resamples=resamples, seed=seed)
            groups = subset.speaker + "|" + subset.model
            within = st.within_spearman_interval(subset[score], subset.gain_db, groups, clusters=subset.speaker,
                                                 resamples=resamples, seed=seed)
            out.append({"score": score, "model": model, "n_rows": len(subset),
                        "n_speakers": subset.speaker.nunique(), "sources": ", ".join(dict.fromkeys(subset.source)),
                        "rho": overall.estimate, "low": overall.low, "high": overall.high,
                        "reason": overall.reason, "rho_within": within.estimate, "low_within": within.low,
                        "high_within": within.high, "reason_within": within.reason,
                        "slope_within": st.within_slope(subset[score], subset.gain_db, groups),
                        "absent_reason": ""})
    return pd.DataFrame(out)


# ---- Q2: a model personalized on one speaker, used for another ------------------------------


def crossed_table_labels(path: Path) -> dict:
    """model, source, size, training speaker and test speaker of a crossed evaluation table, from
    its path `.../MODEL/SOURCE/SIZE/TRAIN/TEST.csv` (rules/analysis.smk names them so)."""
    path = Path(path)
    parts = path.with_suffix("").parts
    if path.suffix != ".csv" or len(parts) < 5:
        raise ValueError(f"{path}: not a crossed evaluation table path (MODEL/SOURCE/SIZE/TRAIN/TEST.csv)")
    return {"model": parts[-5], "source": parts[-4], "size": parts[-3], "train": parts[-2],
            "speaker": parts[-1], "path": str(path)}


def read_crossed_tables(paths: list[Path]) -> pd.DataFrame:
    """The crossed evaluation tables, each row labelled with its model, source, size, test speaker
    (`speaker`) and training speaker (`train`)."""
    frames = []
    for path in paths:
        labels = crossed_table_labels(path)
        frames.append(read_eval_tables([labels]).assign(train=labels["train"]))
    return pd.concat(frames, ignore_index=True)


def cross_pairs(evals: pd.DataFrame, crossed: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Per crossed pair and metric: the test speaker's generalist, its own (matched) model and the
    training speaker's (crossed) model, means over the test speaker's utterances; gap = matched -
    crossed. A pair whose matched table is missing is an error naming it."""
    means = speaker_means(evals, metrics)
    crossed_means = speaker_means(crossed, metrics, KEYS + ["train"])
    rows = []
    for row in crossed_means.itertuples(index=False):
        source, train = row.source, row.train
        matched = select(means, row.model, source, row.size)
        matched = matched[matched.speaker == row.speaker]
        generalist = select(means, row.model, GENERALIST, "-")
        generalist = generalist[generalist.speaker == row.speaker]
        if matched.empty:
            raise ValueError(f"crossed pair {train} -> {row.speaker} ({row.model}, {source} {row.size}): no"
                             f" evaluation of {row.speaker}'s own {source} {row.size} model among the tables")
        for metric in metrics:
            rows.append({"model": row.model, "source": source, "size": row.size, "train": train,
                         "test": row.speaker, "metric": metric,
                         "generalist": generalist[metric].iloc[0] if len(generalist) else np.nan,
                         "matched": matched[metric].iloc[0], "crossed": getattr(row, metric),
                         "gap": matched[metric].iloc[0] - getattr(row, metric)})
    return pd.DataFrame(rows)


def cross_summary(evals: pd.DataFrame, crossed: pd.DataFrame, pairs: pd.DataFrame, resamples: int = st.RESAMPLES,
                  seed: int = st.SEED) -> pd.DataFrame:
    """Per (model, source, size, metric) over the crossed pairs: matched and crossed means, the
    mean gap with its interval over pairs, Wilcoxon of matched against crossed over pairs and over
    utterances (each pair's test mixtures), Holm within a model size, metric and view."""
    rows = []
    for (model, source, size, metric), group in pairs.groupby(["model", "source", "size", "metric"], sort=False):
        group = group.dropna(subset=["matched", "crossed"])
        matched_utterances, crossed_utterances = [], []
        for pair in group.itertuples(index=False):
            own = select(evals, model, source, size)
            own = own[own.speaker == pair.test][["mixture_id", metric]]
            other = select(crossed, model, source, size)
            other = other[(other.train == pair.train) & (other.speaker == pair.test)][["mixture_id", metric]]
            both = own.merge(other, on="mixture_id", suffixes=("_m", "_c"))
            matched_utterances += list(pd.to_numeric(both[f"{metric}_m"], errors="coerce"))
            crossed_utterances += list(pd.to_numeric(both[f"{metric}_c"], errors="coerce"))
        row = difference_row(group.matched, group.crossed, matched_utterances, crossed_utterances,
                             resamples, seed, what="pairs")
        rows.append({"model": model, "source": source, "size": size, "metric": metric,
                     "matched": group.matched.mean(), "crossed": group.crossed.mean(), **row})
    summary = pd.DataFrame(rows)
    return add_holm(summary, ["model", "metric"]) if len(summary) else summary


# ---- Q3: the gain against the amount of training speech -------------------------------------


def training_minutes(speech_folders: dict[tuple[str, str], str], sizes: dict[str, tuple[int, int]],
                     conditions: list[tuple[str, str]]) -> pd.DataFrame:
    """Minutes of training speech per (source, size, speaker): the `duration_s` of the utterances
    that fine-tuning trains on (after the size's validation utterances), from each speech folder's
    manifest."""
    rows = []
    for (source, speaker), folder in speech_folders.items():
        manifest = read_speech_folder(folder)
        for size in [z for s, z in conditions if s == source]:
            if size not in sizes:
                raise ValueError(f"data size {size} of {source} is not among --data-size")
            train, val = sizes[size]
            _, train_rows = nested_subsets(manifest, train, val, folder)
            rows.append({"source": source, "size": size, "speaker": speaker,
                         "minutes": float(train_rows.duration_s.sum()) / 60})
    return pd.DataFrame(rows, columns=["source", "size", "speaker", "minutes"])


def datasize_curve(means: pd.DataFrame, minutes: pd.DataFrame, resamples: int = st.RESAMPLES,
                   seed: int = st.SEED) -> pd.DataFrame:
    """Per model size and condition: minutes of training speech (mean over speakers) and SDRi
    (mean over speakers with its interval); the generalist at 0 minutes."""
    merged = means.merge(minutes, on=["source", "size", "speaker"], how="left")
    merged.loc[merged.source == GENERALIST, "minutes"] = 0.0
    rows = []
    for (model, source, size), group in merged.groupby(["model", "source", "size"], sort=False):
        interval = st.bootstrap_mean(group.sdri_db, resamples, seed)
        rows.append({"model": model, "source": source, "size": size, "n_speakers": interval.n,
                     "minutes": group.minutes.mean(), "minutes_min": group.minutes.min(),
                     "minutes_max": group.minutes.max(), "sdri_db": interval.estimate,
                     "low": interval.low, "high": interval.high, "reason": interval.reason})
    return pd.DataFrame(rows)
