"""Metrics against scipy.stats and against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import scipy.stats

from tooliqa_data import correlation_report, krcc, plcc, plcc_logistic, srcc
from tooliqa_data.metrics import bootstrap_ci, fit_logistic, logistic4


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(7)
    mos = rng.uniform(1, 5, 300)
    pred = np.round(mos + rng.normal(0, 0.8, 300), 1)  # rounding makes ties, as parsed 2-decimal scores do
    return pred, mos


def test_against_scipy(pairs):
    pred, mos = pairs
    # torchmetrics ranks in float32, so SRCC agrees with scipy to ~1e-7, PLCC (float64 throughout) to ~1e-12
    assert srcc(pred, mos) == pytest.approx(scipy.stats.spearmanr(pred, mos).statistic, abs=1e-6)
    assert plcc(pred, mos) == pytest.approx(scipy.stats.pearsonr(pred, mos).statistic, abs=1e-9)
    assert krcc(pred, mos) == pytest.approx(scipy.stats.kendalltau(pred, mos).statistic, abs=1e-12)


def test_hand_computed():
    assert srcc([1, 2, 3, 4], [10, 20, 40, 30]) == pytest.approx(0.8)  # 1 - 6*2/(4*15)
    assert plcc([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert krcc([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_logistic_fit_recovers_a_logistic_relation():
    x = np.linspace(-3, 3, 200)
    y = logistic4(x, 5.0, 1.0, 0.5, 0.7)
    fit = fit_logistic(x, y)
    assert fit.converged
    np.testing.assert_allclose(fit.params[:3], (5.0, 1.0, 0.5), atol=1e-4)
    assert abs(fit.params[3]) == pytest.approx(0.7, abs=1e-4)
    assert plcc_logistic(x, y) == pytest.approx(1.0, abs=1e-9)
    assert plcc(x, y) < 0.99  # the raw PLCC of a sigmoid is visibly lower


def test_logistic_matches_scipy_reference_fit(pairs):
    pred, mos = pairs
    init = [mos.max(), mos.min(), pred.mean(), pred.std() / 4]
    params, _ = scipy.optimize.curve_fit(logistic4, pred, mos, p0=init, maxfev=10000)
    expected = scipy.stats.pearsonr(logistic4(pred, *params), mos).statistic
    assert plcc_logistic(pred, mos) == pytest.approx(expected, abs=1e-6)


def test_logistic_fallback_is_the_raw_plcc(pairs, monkeypatch):
    pred, mos = pairs

    def fail(*args, **kwargs):
        raise RuntimeError("Optimal parameters not found")

    monkeypatch.setattr(scipy.optimize, "curve_fit", fail)
    assert not fit_logistic(pred, mos).converged
    assert plcc_logistic(pred, mos) == pytest.approx(plcc(pred, mos))


def test_degenerate_inputs():
    assert math.isnan(srcc([1, 2], [1, 2]))
    assert math.isnan(plcc([3, 3, 3, 3], [1, 2, 3, 4]))
    assert math.isnan(correlation_report([1, 1, 1], [1, 2, 3]).plcc_logistic)
    with pytest.raises(ValueError, match="differ in length"):
        srcc([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="finite"):
        plcc([1, float("nan"), 3], [1, 2, 3])


def test_bootstrap_is_seeded_and_brackets_the_estimate(pairs):
    pred, mos = pairs
    first = bootstrap_ci(pred, mos, resamples=400, seed=3)
    assert first == bootstrap_ci(pred, mos, resamples=400, seed=3)
    assert first != bootstrap_ci(pred, mos, resamples=400, seed=4)
    (s_low, s_high), (p_low, p_high) = first
    assert s_low < srcc(pred, mos) < s_high and p_low < plcc(pred, mos) < p_high
    assert 0.02 < s_high - s_low < 0.2
    report = correlation_report(pred, mos, bootstrap=400, seed=3)
    assert (report.srcc_ci, report.plcc_ci) == first and report.n == 300
