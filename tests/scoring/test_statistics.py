"""scoring.statistics against scipy.stats on fixed data, and on constructed data whose answer is
known: a score ranked as the gain gives rho 1, centring removes a per-speaker offset, fewer than
5 speakers give no p-value and no interval."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from workflow_scripts.scoring.statistics import (
    MIN_PAIRS,
    bootstrap_mean,
    centre_within,
    holm,
    spearman,
    spearman_interval,
    wilcoxon_paired,
    within_slope,
    within_spearman_interval,
)

# fixed data: 12 speakers' mean SDRi of two conditions (dB)
A = np.array([6.1, 7.4, 5.2, 8.8, 6.6, 7.9, 5.7, 9.3, 6.9, 7.1, 8.2, 6.4])
B = np.array([5.3, 7.6, 4.1, 7.2, 6.0, 6.8, 5.9, 8.1, 5.5, 6.2, 7.7, 5.0])


def scipy_percentile_interval(data, statistic, seed, **kwargs):
    result = stats.bootstrap(data, statistic, n_resamples=2000, method="percentile",
                             rng=np.random.default_rng(seed), **kwargs)
    return result.confidence_interval.low, result.confidence_interval.high


def test_bootstrap_mean_is_scipy_s_percentile_bootstrap():
    interval = bootstrap_mean(A, resamples=2000, seed=3)
    low, high = scipy_percentile_interval((A,), np.mean, seed=3)
    assert interval.estimate == pytest.approx(A.mean(), abs=1e-12)
    assert (interval.low, interval.high) == pytest.approx((low, high), abs=1e-12)
    assert interval.n == A.size and interval.reason == ""
    # seeded: the same seed gives the same interval, another seed another
    assert bootstrap_mean(A, resamples=2000, seed=3) == interval
    assert bootstrap_mean(A, resamples=2000, seed=4) != interval


def test_bootstrap_mean_leaves_out_missing_values_and_needs_five():
    with_nan = bootstrap_mean(np.append(A, np.nan), resamples=2000, seed=3)
    assert with_nan == bootstrap_mean(A, resamples=2000, seed=3)
    few = bootstrap_mean(A[: MIN_PAIRS - 1])
    assert few.estimate == pytest.approx(A[:4].mean()) and np.isnan(few.low) and np.isnan(few.high)
    assert few.reason == "too few speakers (4 < 5)"
    assert bootstrap_mean(A[:MIN_PAIRS]).reason == ""


def test_wilcoxon_over_speakers_is_scipy_s():
    result = wilcoxon_paired(A, B)
    expected = stats.wilcoxon(A, B)
    assert result.p == pytest.approx(expected.pvalue, abs=1e-15)
    assert result.statistic == expected.statistic and result.n == 12
    # over utterances: many pairs, scipy's normal approximation
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.2, 1.0, 180), rng.normal(0.0, 1.0, 180)
    assert wilcoxon_paired(a, b, what="utterances").p == pytest.approx(stats.wilcoxon(a, b).pvalue, abs=1e-15)


def test_wilcoxon_needs_five_pairs_and_leaves_out_missing_ones():
    result = wilcoxon_paired(A[:4], B[:4])
    assert np.isnan(result.p) and result.reason == "too few speakers (4 < 5)" and result.n == 4
    a, b = np.append(A, np.nan), np.append(B, 3.0)
    assert wilcoxon_paired(a, b).p == pytest.approx(stats.wilcoxon(A, B).pvalue)
    assert wilcoxon_paired(A[:5], B[:5]).reason == ""
    same = wilcoxon_paired(A, A)
    assert np.isnan(same.p) and "no difference" in same.reason


def holm_by_definition(p):
    """Holm (1979): reject H_(1)...H_(k) while p_(j) <= alpha / (m - j + 1); the adjusted p of
    H_(j) is the smallest alpha that rejects it."""
    m = len(p)
    order = np.argsort(p)
    adjusted = np.empty(m)
    for rank, i in enumerate(order):
        adjusted[i] = min(1.0, max((m - r) * p[order[r]] for r in range(rank + 1)))
    return adjusted


def test_holm_against_its_definition_and_a_worked_example():
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.20, 0.04])
    assert holm(p) == pytest.approx(holm_by_definition(p), abs=1e-15)
    # Wikipedia's example: m = 4, p = 0.01, 0.04, 0.03, 0.005
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # with scipy's p-values of real tests, and missing ones kept out of the family
    tests = [stats.wilcoxon(A, B).pvalue, stats.wilcoxon(A, B + 0.5).pvalue, np.nan, 0.5]
    adjusted = holm(tests)
    assert np.isnan(adjusted[2])
    assert adjusted[[0, 1, 3]] == pytest.approx(holm_by_definition(np.array(tests)[[0, 1, 3]]))
    assert np.all(adjusted[[0, 1, 3]] >= np.array(tests)[[0, 1, 3]])


def test_spearman_interval_is_scipy_s_paired_bootstrap():
    rng = np.random.default_rng(1)
    score = rng.uniform(0.7, 0.95, 20)
    gain = 10 * score + rng.normal(0, 0.8, 20)
    interval = spearman_interval(score, gain, resamples=2000, seed=5)
    low, high = scipy_percentile_interval(
        (score, gain), lambda x, y: stats.spearmanr(x, y).statistic, seed=5, paired=True, vectorized=False)
    assert interval.estimate == pytest.approx(stats.spearmanr(score, gain).statistic, abs=1e-12)
    assert (interval.low, interval.high) == pytest.approx((low, high), abs=1e-12)
    # one row per cluster: resampling clusters is resampling rows
    clustered = spearman_interval(score, gain, clusters=[f"s{i}" for i in range(20)], resamples=2000, seed=5)
    assert (clustered.low, clustered.high) == pytest.approx((low, high), abs=1e-12)


def test_a_score_ranked_as_the_gain_gives_rho_one():
    speakers = np.repeat([f"spk{i}" for i in range(6)], 3)
    score = np.linspace(0.5, 0.95, speakers.size)
    gain = np.exp(score * 4)  # monotone, far from linear
    interval = spearman_interval(score, gain, clusters=speakers)
    assert interval.estimate == pytest.approx(1.0)
    assert interval.low == pytest.approx(1.0) and interval.high == pytest.approx(1.0)
    assert spearman_interval(score, -gain, clusters=speakers).estimate == pytest.approx(-1.0)
    assert interval.n == 6


def test_speaker_centred_view_removes_a_per_speaker_offset():
    """Within every speaker the gain rises with the score, but the speakers with the highest
    scores are the hardest ones (a large negative offset): pooled, rho is negative; centred per
    speaker, it is 1."""
    rng = np.random.default_rng(2)
    speakers = np.repeat([f"spk{i}" for i in range(8)], 4)
    base_score = np.repeat(np.linspace(0.6, 0.9, 8), 4)
    score = base_score + np.tile([0.0, 0.01, 0.02, 0.03], 8) + rng.uniform(0, 0.001, speakers.size)
    offset = np.repeat(np.linspace(0.0, -20.0, 8), 4)
    gain = offset + 50 * (score - base_score)
    assert spearman(score, gain) < -0.5
    centred = within_spearman_interval(score, gain, speakers)
    assert centred.estimate == pytest.approx(1.0) and centred.low == pytest.approx(1.0)
    assert within_slope(score, gain, speakers) == pytest.approx(50.0, rel=0.05)
    gain_centred = centre_within(gain, speakers)
    for speaker in set(speakers):
        assert gain_centred[speakers == speaker].mean() == pytest.approx(0.0, abs=1e-9)
    # an offset alone correlates with nothing once centred
    flat = within_spearman_interval(score, offset, speakers)
    assert np.isnan(flat.estimate) and flat.reason


def test_correlation_intervals_need_five_speakers():
    speakers = np.repeat(["a", "b", "c", "d"], 3)
    score = np.arange(12.0)
    interval = spearman_interval(score, score ** 2, clusters=speakers)
    assert interval.estimate == pytest.approx(1.0)
    assert np.isnan(interval.low) and interval.reason == "too few speakers (4 < 5)"
    # a speaker with one row has nothing to centre against: left out of the centred view
    speakers = np.array(["a", "a", "b", "b", "c", "c", "d", "d", "e", "e", "f"])
    score = np.arange(11.0)
    centred = within_spearman_interval(score, score * 2, speakers)
    assert centred.n == 5 and centred.reason == ""
