"""Correlation metrics between predicted scores and MOS.

Headline numbers (as the paper's tables): SRCC and PLCC computed by ``torchmetrics`` on the **raw** predictions (no
fitting), in float64. Also reported: PLCC after the 4-parameter logistic fit (SPEC §8)

    f(x) = (β1 − β2) / (1 + exp(−(x − β3) / |β4|)) + β2

fitted with ``scipy.optimize.curve_fit`` from the pyiqa/DeQA initialisation β = [max(y), min(y), mean(x), std(x)/4]
(std(x)/4 replaced by 1 when x is constant), ``maxfev=10000``; when the fit fails or gives a non-finite result the
raw PLCC is used and ``LogisticFit.converged`` says so. KRCC is scipy's Kendall tau-b. Bootstrap confidence intervals
(percentile method, seeded) are optional. Fewer than 3 pairs, or a constant input, give NaN. torchmetrics ranks in
float32, so its SRCC agrees with scipy.stats.spearmanr to about 1e-7.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_PAIRS = 3


def _arrays(pred: Sequence[float], mos: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(pred, dtype=np.float64).ravel(), np.asarray(mos, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"pred and mos differ in length: {x.size} vs {y.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("pred and mos must be finite (drop parse failures before computing metrics)")
    return x, y


def _degenerate(x: np.ndarray, y: np.ndarray) -> bool:
    return x.size < MIN_PAIRS or np.ptp(x) == 0 or np.ptp(y) == 0


def srcc(pred: Sequence[float], mos: Sequence[float]) -> float:
    """Spearman rank correlation (ties get average ranks), via ``torchmetrics``."""
    import torch
    from torchmetrics.functional import spearman_corrcoef

    x, y = _arrays(pred, mos)
    if _degenerate(x, y):
        return math.nan
    return float(spearman_corrcoef(torch.from_numpy(x), torch.from_numpy(y)))


def plcc(pred: Sequence[float], mos: Sequence[float]) -> float:
    """Pearson linear correlation on the raw values (no fitting), via ``torchmetrics``."""
    import torch
    from torchmetrics.functional import pearson_corrcoef

    x, y = _arrays(pred, mos)
    if _degenerate(x, y):
        return math.nan
    return float(pearson_corrcoef(torch.from_numpy(x), torch.from_numpy(y)))


def krcc(pred: Sequence[float], mos: Sequence[float]) -> float:
    """Kendall rank correlation tau-b (``scipy.stats.kendalltau``)."""
    import scipy.stats

    x, y = _arrays(pred, mos)
    if _degenerate(x, y):
        return math.nan
    return float(scipy.stats.kendalltau(x, y).statistic)


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """The 4-parameter logistic ``(b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2``."""
    z = np.clip(-(x - b3) / max(abs(b4), 1e-12), -500.0, 500.0)  # clip: keep exp finite for far-off points
    return (b1 - b2) / (1.0 + np.exp(z)) + b2


@dataclass(frozen=True)
class LogisticFit:
    """Result of fitting :func:`logistic4` from predictions to MOS."""

    params: tuple[float, float, float, float]
    """β1..β4 (the initial guess when the fit did not converge)."""
    converged: bool
    """False when ``curve_fit`` failed; the fitted PLCC then falls back to the raw PLCC."""

    def __call__(self, x: Sequence[float] | np.ndarray) -> np.ndarray:
        return logistic4(np.asarray(x, dtype=np.float64), *self.params)


def fit_logistic(pred: Sequence[float], mos: Sequence[float]) -> LogisticFit:
    """Fit the 4-parameter logistic mapping predictions onto MOS (init and fallback in the module docstring)."""
    import scipy.optimize

    x, y = _arrays(pred, mos)
    spread = float(np.std(x)) / 4.0
    init = (float(np.max(y)), float(np.min(y)), float(np.mean(x)), spread if spread > 0 else 1.0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # OptimizeWarning on poorly determined covariance is irrelevant here
            params, _ = scipy.optimize.curve_fit(logistic4, x, y, p0=init, maxfev=10000)
    except (RuntimeError, ValueError, TypeError):
        return LogisticFit(init, False)
    if not np.isfinite(params).all():
        return LogisticFit(init, False)
    return LogisticFit(tuple(float(p) for p in params), True)


def plcc_logistic(pred: Sequence[float], mos: Sequence[float], fit: LogisticFit | None = None) -> float:
    """PLCC between the logistic-fitted predictions and MOS (raw PLCC if the fit fails); ``fit`` skips refitting."""
    x, y = _arrays(pred, mos)
    if _degenerate(x, y):
        return math.nan
    fit = fit or fit_logistic(x, y)
    fitted = fit(x)
    if not fit.converged or np.ptp(fitted) == 0:
        return plcc(x, y)
    return plcc(fitted, y)


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denom = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(axis=1) / denom


def bootstrap_ci(
    pred: Sequence[float], mos: Sequence[float], *, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Percentile bootstrap intervals ``((srcc_lo, srcc_hi), (plcc_lo, plcc_hi))`` over ``resamples`` resamples.

    Vectorised in numpy (rank-then-Pearson for SRCC, identical to the torchmetrics definition); resamples that come
    out constant are ignored. Deterministic for a given ``seed``.
    """
    import scipy.stats

    x, y = _arrays(pred, mos)
    if _degenerate(x, y):
        return (math.nan, math.nan), (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, x.size, size=(resamples, x.size))
    xs, ys = x[index], y[index]
    rank_corr = _pearson_rows(scipy.stats.rankdata(xs, axis=1), scipy.stats.rankdata(ys, axis=1))
    lin_corr = _pearson_rows(xs, ys)
    tail = (1.0 - confidence) / 2.0 * 100.0

    def interval(values: np.ndarray) -> tuple[float, float]:
        values = values[np.isfinite(values)]
        if values.size == 0:
            return math.nan, math.nan
        low, high = np.percentile(values, [tail, 100.0 - tail])
        return float(low), float(high)

    return interval(rank_corr), interval(lin_corr)


@dataclass(frozen=True)
class CorrelationReport:
    """Every correlation metric for one set of (prediction, MOS) pairs."""

    n: int
    """Number of pairs."""
    srcc: float
    """Spearman (torchmetrics), headline."""
    plcc: float
    """Pearson on raw predictions (torchmetrics), headline."""
    plcc_logistic: float
    """Pearson after the 4-parameter logistic fit."""
    krcc: float
    """Kendall tau-b."""
    logistic: LogisticFit | None
    """The fitted logistic (``None`` when there are too few pairs)."""
    srcc_ci: tuple[float, float] | None = None
    """Bootstrap interval of SRCC (``None`` when not requested)."""
    plcc_ci: tuple[float, float] | None = None
    """Bootstrap interval of the raw PLCC (``None`` when not requested)."""


def correlation_report(
    pred: Sequence[float], mos: Sequence[float], *, bootstrap: int = 0, confidence: float = 0.95, seed: int = 0
) -> CorrelationReport:
    """All metrics at once; ``bootstrap > 0`` adds seeded percentile intervals for SRCC and PLCC."""
    x, y = _arrays(pred, mos)
    degenerate = _degenerate(x, y)
    fit = None if degenerate else fit_logistic(x, y)
    cis = bootstrap_ci(x, y, resamples=bootstrap, confidence=confidence, seed=seed) if bootstrap > 0 else (None, None)
    return CorrelationReport(
        n=int(x.size),
        srcc=srcc(x, y),
        plcc=plcc(x, y),
        plcc_logistic=plcc_logistic(x, y, fit),
        krcc=krcc(x, y),
        logistic=fit,
        srcc_ci=cis[0],
        plcc_ci=cis[1],
    )
