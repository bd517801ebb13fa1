"""Predicted-vs-MOS scatter plots (matplotlib Agg rendering, no display needed) with the fitted logistic curve."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tooliqa_data.records import PredictionRow
from tooliqa_data.summary import DatasetSummary
from tooliqa_data.tables import fmt


def safe_name(name: str) -> str:
    """A file-name-safe form of a dataset name (``KADID-10K/test`` → ``KADID-10K_test``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "dataset"


def scatter_plot(path: Path, summary: DatasetSummary, rows: Sequence[PredictionRow]) -> Path | None:
    """Write the scatter of one labeled dataset's scored rows to ``path``; ``None`` (nothing written) if unlabeled."""
    if summary.metrics is None:
        return None
    # A bare Figure renders through Agg without pyplot: headless, and no global backend state is touched.
    from matplotlib.figure import Figure

    scored = [row for row in rows if row.score is not None and row.mos is not None]
    x = np.array([row.score for row in scored], dtype=np.float64)
    y = np.array([row.mos for row in scored], dtype=np.float64)
    figure = Figure(figsize=(4.8, 4.2), dpi=110)
    axes = figure.add_subplot()
    axes.scatter(x, y, s=9, alpha=0.55, edgecolors="none")
    m = summary.metrics
    if m.logistic is not None and m.logistic.converged and x.size:
        grid = np.linspace(x.min(), x.max(), 200)
        axes.plot(grid, m.logistic(grid), color="tab:red", linewidth=1.5, label="logistic fit")
        axes.legend(loc="lower right", fontsize=8)
    axes.set_xlabel("predicted score")
    axes.set_ylabel("MOS (higher = better)")
    axes.set_title(
        f"{summary.name}  n={m.n}  SRCC {fmt(m.srcc)}  PLCC {fmt(m.plcc)} (logistic {fmt(m.plcc_logistic)})",
        fontsize=8,
    )
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    return path
