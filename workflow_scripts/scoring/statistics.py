"""The statistics of the analysis tables, one function each, checked against scipy.stats on fixed
data (tests/scoring/test_statistics.py).

- `bootstrap_mean`: a mean with its seeded percentile bootstrap interval (over speakers: resample
  the per-speaker means), as `scipy.stats.bootstrap(..., method="percentile")` with the same seed;
- `wilcoxon_paired`: the two-sided Wilcoxon signed-rank test of paired values (over speakers, or
  over utterances as a second view), `scipy.stats.wilcoxon`;
- `holm`: Holm's step-down adjustment of a family of p-values (missing ones stay missing);
- `spearman_interval`: Spearman's rho with a seeded bootstrap interval that resamples clusters
  (speakers: all rows of a speaker go together), the row bootstrap of scipy when every cluster is
  one row;
- `centre_within` and `within_spearman_interval`: the speaker-centred view, gain and score each
  minus its cluster's mean before correlating, so that only differences within a speaker count;
  `within_slope`, the slope of that view's least-squares line.

Fewer than `MIN_PAIRS` speakers (or pairs) give no interval and no p-value but the reason, "too
few speakers": a percentile bootstrap of 4 values covers far less than its level, and an exact
two-sided Wilcoxon test of 4 pairs cannot go below p = 0.125.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

MIN_PAIRS = 5  # speakers (or pairs) needed for an interval or a p-value
RESAMPLES = 10_000
SEED = 0
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """An estimate with its bootstrap interval (NaN bounds with the reason when there is none)."""

    estimate: float
    low: float
    high: float
    n: int  # values, or clusters, the interval resamples
    reason: str = ""


@dataclass(frozen=True)
class TestResult:
    """A test's statistic and two-sided p-value (NaN with the reason when there is none)."""

    statistic: float
    p: float
    n: int  # pairs
    reason: str = ""


def too_few(n: int, what: str = "speakers", minimum: int = MIN_PAIRS) -> str:
    """The reason an interval or test is not given, or "" when `n` is enough."""
    return f"too few {what} ({n} < {minimum})" if n < minimum else ""


def finite(values) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[np.isfinite(values)]


def percentile_bounds(resampled: np.ndarray, level: float) -> tuple[float, float]:
    """The percentile interval of a bootstrap distribution (undefined resamples left out)."""
    alpha = (1 - level) / 2
    resampled = finite(resampled)
    if not resampled.size:
        return np.nan, np.nan
    low, high = np.quantile(resampled, [alpha, 1 - alpha])
    return float(low), float(high)


def bootstrap_mean(values, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL,
                   min_n: int = MIN_PAIRS, what: str = "speakers") -> Interval:
    """The mean of the finite `values` and its percentile bootstrap interval: `resamples` draws of
    n values with replacement from `np.random.default_rng(seed)`, the draws scipy makes."""
    values = finite(values)
    n = values.size
    mean = float(values.mean()) if n else np.nan
    reason = too_few(n, what, min_n) if n else f"no {what}"
    if reason:
        return Interval(mean, np.nan, np.nan, n, reason)
    draws = np.random.default_rng(seed).integers(0, n, (resamples, n))
    low, high = percentile_bounds(values[draws].mean(axis=-1), level)
    return Interval(mean, low, high, n)


def wilcoxon_paired(a, b, min_pairs: int = MIN_PAIRS, what: str = "speakers") -> TestResult:
    """Two-sided Wilcoxon signed-rank test of a against b, pairs with a missing value left out
    (scipy's default: exact below 50 pairs without ties or zeros, zero differences dropped)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired values of different lengths: {a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    n = int(a.size)
    reason = too_few(n, what, min_pairs)
    if reason:
        return TestResult(np.nan, np.nan, n, reason)
    if np.all(a == b):
        return TestResult(np.nan, np.nan, n, "every pair is equal: no difference to test")
    result = stats.wilcoxon(a, b)
    return TestResult(float(result.statistic), float(result.pvalue), n)


def holm(p_values) -> np.ndarray:
    """Holm's adjusted p-values of one family: the j-th smallest of m is max over i <= j of
    (m - i + 1) p_(i), at most 1. NaN stays NaN and does not count in m."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    known = np.flatnonzero(np.isfinite(p))
    m = known.size
    if not m:
        return adjusted
    order = known[np.argsort(p[known], kind="stable")]
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted


def spearman(x, y) -> float:
    """Spearman's rho of paired values (NaN when either is constant or fewer than 3 pairs)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan
    return float(stats.spearmanr(x, y).statistic)


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row of x with the same row of y (NaN for a constant row)."""
    rx, ry = stats.rankdata(x, axis=-1), stats.rankdata(y, axis=-1)
    rx -= rx.mean(axis=-1, keepdims=True)
    ry -= ry.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(-1) / np.sqrt((rx * rx).sum(-1) * (ry * ry).sum(-1))


def cluster_codes(clusters, n: int) -> np.ndarray:
    """An integer per row naming its cluster (each row its own cluster when None)."""
    if clusters is None:
        return np.arange(n)
    return pd.factorize(pd.Series(list(clusters)), sort=False)[0]


def spearman_interval(x, y, clusters=None, resamples: int = RESAMPLES, seed: int = SEED,
                      level: float = LEVEL, min_clusters: int = MIN_PAIRS, what: str = "speakers") -> Interval:
    """Spearman's rho of the rows where x and y are both finite, and its percentile bootstrap
    interval: each resample draws as many clusters as there are, with replacement (the integers
    scipy's paired bootstrap draws), and takes all their rows. Resamples whose rho is undefined
    (a constant score) are left out of the interval."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    codes = cluster_codes(clusters, x.size)[keep]
    x, y = x[keep], y[keep]
    codes = pd.factorize(codes, sort=False)[0]
    n_clusters = int(codes.max() + 1) if codes.size else 0
    rho = spearman(x, y)
    reason = too_few(n_clusters, what, min_clusters)
    if np.isnan(rho):
        reason = reason or "rho undefined (a constant score or gain, or fewer than 3 rows)"
    if reason:
        return Interval(rho, np.nan, np.nan, n_clusters, reason)
    draws = np.random.default_rng(seed).integers(0, n_clusters, (resamples, n_clusters))
    members = [np.flatnonzero(codes == k) for k in range(n_clusters)]
    if all(m.size == 1 for m in members):
        rows = [np.array([m[0] for m in members])[draws]]
    else:
        lengths = np.array([m.size for m in members])[draws].sum(axis=1)
        resampled = [np.concatenate([members[k] for k in draw]) for draw in draws]
        rows = [np.stack([r for r, length in zip(resampled, lengths) if length == size])
                for size in np.unique(lengths)]
    rhos = np.concatenate([spearman_rows(x[index], y[index]) for index in rows])
    low, high = percentile_bounds(rhos, level)
    return Interval(rho, low, high, n_clusters)


def centre_within(values, clusters) -> np.ndarray:
    """Each value minus the mean of its cluster's finite values."""
    values = pd.Series(np.asarray(values, dtype=float))
    return (values - values.groupby(cluster_codes(clusters, len(values))).transform("mean")).to_numpy()


def repeated_clusters(x, y, clusters) -> np.ndarray:
    """Rows with x and y finite whose cluster has at least two such rows (a cluster of one row
    has nothing to compare within it)."""
    keep = np.isfinite(np.asarray(x, dtype=float)) & np.isfinite(np.asarray(y, dtype=float))
    codes = cluster_codes(clusters, keep.size)
    counts = np.bincount(codes[keep], minlength=codes.max() + 1 if codes.size else 0)
    return keep & (counts[codes] >= 2)


def within_spearman_interval(x, y, centre_by, clusters=None, **kwargs) -> Interval:
    """`spearman_interval` of x and y each centred within its group of `centre_by` (groups of one
    row left out), resampling `clusters` (default: those groups)."""
    keep = repeated_clusters(x, y, centre_by)
    groups = np.asarray(list(centre_by), dtype=object)[keep]
    clusters = groups if clusters is None else np.asarray(list(clusters), dtype=object)[keep]
    x = centre_within(np.asarray(x, dtype=float)[keep], groups)
    y = centre_within(np.asarray(y, dtype=float)[keep], groups)
    return spearman_interval(x, y, clusters=clusters, **kwargs)


def within_slope(x, y, centre_by) -> float:
    """The least-squares slope of y on x, both centred within their group of `centre_by` (NaN when
    x does not vary within any group)."""
    keep = repeated_clusters(x, y, centre_by)
    groups = np.asarray(list(centre_by), dtype=object)[keep]
    x = centre_within(np.asarray(x, dtype=float)[keep], groups)
    y = centre_within(np.asarray(y, dtype=float)[keep], groups)
    denominator = float((x * x).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else np.nan
