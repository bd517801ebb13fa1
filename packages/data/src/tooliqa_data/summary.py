"""Per-dataset metrics, the tool-usage breakdown (paper Tables 6/7) and efficiency (Table 8) from prediction rows.

Tool categories partition the scored rows: ``tool-free`` (no call at all), ``only <tool>`` (every successful call
used that tool), ``mixed`` (successful calls of several tools) and ``failed calls only``; ``tool`` is the union of
the rows with ≥ 1 successful call. Frequencies are shares of the dataset's scored rows. The paper's Tables 6/7 list
the same rows (𝒯 = ×, ✓, 𝒞, ℳ).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from tooliqa_data.metrics import CorrelationReport, correlation_report, plcc, srcc
from tooliqa_data.records import PredictionRow


@dataclass(frozen=True)
class DatasetSummary:
    """Counts and metrics of one dataset's rows."""

    name: str
    """Dataset name."""
    n_rows: int
    """All rows (images listed), errors included."""
    n_scored: int
    """Rows with a score (and a MOS when labeled): what the metrics use."""
    n_parse_failures: int
    """Rows the assessor could not read a score from."""
    n_errors: int
    """Image errors and failed assessor batches."""
    statuses: dict[str, int]
    """Row count per status."""
    labeled: bool
    """True when the dataset's rows carry MOS."""
    metrics: CorrelationReport | None
    """Correlations over the scored rows (``None`` for unlabeled datasets)."""
    note: str = ""
    """Why metrics are missing, or the dataset's scale note."""


@dataclass(frozen=True)
class ToolRow:
    """One row of the tool-usage breakdown."""

    category: str
    """``all``, ``tool-free``, ``tool``, ``only <tool>``, ``mixed``, ``failed calls only``."""
    n: int
    """Scored rows in the category."""
    frequency: float
    """Share of the dataset's scored rows, in percent."""
    srcc: float
    """SRCC within the category (NaN under 3 rows)."""
    plcc: float
    """Raw PLCC within the category."""


@dataclass(frozen=True)
class Efficiency:
    """Table 8's row: throughput and cost per image over the rows the assessor ran on."""

    images: int
    """Assessed images."""
    seconds: float
    """Sum of per-image seconds."""
    images_per_second: float
    """``images / seconds`` (it/s in the paper)."""
    output_tokens_per_image: float
    """Mean output tokens."""
    tool_calls_per_image: float
    """Mean tool calls issued (failed ones included)."""


def _scored(rows: Sequence[PredictionRow], labeled: bool) -> list[PredictionRow]:
    return [row for row in rows if row.score is not None and (row.mos is not None or not labeled)]


def _undefined_note(scores: Sequence[float], mos: Sequence[float]) -> str:
    """Why the correlations are undefined ("—" in the tables), or "" when they are not."""
    if len(scores) < 3:
        return f"only {len(scores)} scored rows: correlations undefined"
    if len(set(scores)) == 1:
        # the policy answers the same for every image (an argmax shared by all): say so instead of a bare "—"
        return (
            f"constant predictions: all {len(scores)} scored rows are {scores[0]:g}, so correlations are undefined; "
            "more samples per image (samples > 1, temperature > 0) or readout expected can still rank them"
        )
    if len(set(mos)) == 1:
        return f"constant MOS: all {len(mos)} labels are {mos[0]:g}, so correlations are undefined"
    return ""


def summarize_dataset(
    name: str, rows: Sequence[PredictionRow], *, bootstrap: int = 0, confidence: float = 0.95, seed: int = 0
) -> DatasetSummary:
    """Counts and correlations for one dataset's rows."""
    statuses = dict(sorted(Counter(row.status for row in rows).items()))
    labeled = bool(rows) and any(row.mos is not None for row in rows)
    scored = _scored(rows, labeled)
    failures = sum(row.status == "parse_failure" for row in rows)
    errors = sum(not row.assessed for row in rows)
    if not labeled:
        metrics, note = None, "unlabeled: scores only, metrics skipped"
    else:
        metrics = correlation_report(
            [row.score for row in scored], [row.mos for row in scored], bootstrap=bootstrap, confidence=confidence,
            seed=seed,
        )  # fmt: skip
        note = _undefined_note([row.score for row in scored], [row.mos for row in scored])
    return DatasetSummary(name, len(rows), len(scored), failures, errors, statuses, labeled, metrics, note)


def _category_row(category: str, rows: Sequence[PredictionRow], total: int) -> ToolRow:
    pred, mos = [row.score for row in rows], [row.mos for row in rows]
    labeled = all(m is not None for m in mos)
    return ToolRow(
        category,
        len(rows),
        100.0 * len(rows) / total if total else math.nan,
        srcc(pred, mos) if labeled and rows else math.nan,
        plcc(pred, mos) if labeled and rows else math.nan,
    )


def tool_breakdown(rows: Sequence[PredictionRow]) -> list[ToolRow]:
    """The Tables 6/7 rows for one dataset's scored rows (categories in the module docstring)."""
    labeled = any(row.mos is not None for row in rows)
    scored = _scored(rows, labeled)
    total = len(scored)
    groups: dict[str, list[PredictionRow]] = {"tool-free": [], "tool": []}
    for row in scored:
        used = [tool for tool in row.tools.split(";") if tool]
        if row.n_tool_calls == 0:
            groups["tool-free"].append(row)
        elif not used:
            groups.setdefault("failed calls only", []).append(row)
        else:
            groups["tool"].append(row)
            groups.setdefault(f"only {used[0]}" if len(used) == 1 else "mixed", []).append(row)
    order = ["tool-free", "tool"] + sorted(k for k in groups if k.startswith("only ")) + ["mixed", "failed calls only"]
    result = [_category_row("all", scored, total)]
    result += [_category_row(key, groups[key], total) for key in order if key in groups]
    return result


def efficiency(rows: Sequence[PredictionRow]) -> Efficiency:
    """Table 8's numbers over the rows the assessor ran on (image errors and failed batches excluded)."""
    assessed = [row for row in rows if row.assessed]
    n = len(assessed)
    seconds = sum(row.seconds for row in assessed)
    return Efficiency(
        images=n,
        seconds=seconds,
        images_per_second=n / seconds if seconds > 0 else math.nan,
        output_tokens_per_image=sum(row.output_tokens for row in assessed) / n if n else math.nan,
        tool_calls_per_image=sum(row.n_tool_calls for row in assessed) / n if n else math.nan,
    )


def average(summaries: Sequence[DatasetSummary]) -> tuple[float, float, float]:
    """Mean SRCC, raw PLCC and logistic PLCC over labeled datasets with defined metrics (the tables' Avg column)."""
    reports = [s.metrics for s in summaries if s.metrics is not None and math.isfinite(s.metrics.srcc)]
    if not reports:
        return math.nan, math.nan, math.nan
    n = len(reports)
    return (
        sum(r.srcc for r in reports) / n,
        sum(r.plcc for r in reports) / n,
        sum(r.plcc_logistic for r in reports) / n,
    )
