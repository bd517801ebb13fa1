"""Held-out SRCC/PLCC during training, through the data package's metrics (the same numbers ``apps/eval.py`` reports)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tooliqa_data import plcc, srcc

__all__ = ["HeldOutResult", "held_out_change", "held_out_result"]


@dataclass(frozen=True)
class HeldOutResult:
    """One validation pass over the held-out split."""

    step: int
    """Optimizer step at which it ran."""
    srcc: float
    """Spearman rank correlation of predictions with MOS."""
    plcc: float
    """Pearson linear correlation of raw predictions with MOS."""
    n: int
    """Images scored."""
    parse_failures: float
    """Fraction of images without a valid final score (scored as ``failure_score`` in the correlations)."""
    score_std: float
    """Spread of the predicted scores (0 means a constant predictor: correlations are then 0 by convention)."""

    def log(self, prefix: str) -> dict[str, float]:
        """``{"<prefix>/srcc": …, …}`` for the loggers."""
        return {f"{prefix}/{k}": float(v) for k, v in vars(self).items() if k != "step"}

    def summary(self) -> str:
        """One line for the console."""
        return (
            f"[held-out] step {self.step}: SRCC {self.srcc:.3f}  PLCC {self.plcc:.3f}  "
            f"(n={self.n}, parse failures {self.parse_failures:.0%}, score std {self.score_std:.3f})"
        )


def held_out_result(rows: Sequence[tuple[float | None, float]], step: int, failure_score: float) -> HeldOutResult:
    """Correlations of ``(predicted score or None, mos)`` rows; a failure counts as ``failure_score``."""
    if not rows:
        raise ValueError("held-out set is empty: configure data.val (or the synthetic held-out references)")
    predictions = [failure_score if score is None else float(score) for score, _ in rows]
    mos = [m for _, m in rows]
    mean = sum(predictions) / len(predictions)
    std = (sum((p - mean) ** 2 for p in predictions) / len(predictions)) ** 0.5
    constant = std == 0.0 or len(set(mos)) < 2
    return HeldOutResult(
        step=step,
        srcc=0.0 if constant else float(srcc(predictions, mos)),
        plcc=0.0 if constant else float(plcc(predictions, mos)),
        n=len(rows),
        parse_failures=sum(score is None for score, _ in rows) / len(rows),
        score_std=std,
    )


def held_out_change(results: Sequence[HeldOutResult], readout: str) -> str:
    """The line a fit ends with: held-out SRCC/PLCC from the first pass to the last, for one readout."""
    first, last = results[0], results[-1]
    return (
        f"held-out SRCC {first.srcc:.3f} → {last.srcc:.3f}, PLCC {first.plcc:.3f} → {last.plcc:.3f} "
        f"(step {first.step} → {last.step}; {readout} readout)"
    )
