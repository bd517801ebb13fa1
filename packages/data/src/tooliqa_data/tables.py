"""Write metrics.json, table.md (paper Table 1 layout) and tools.md (Tables 6/7 and Table 8) into the output folder."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from tooliqa_data.assessment import RunMetadata
from tooliqa_data.config import EvalConfig
from tooliqa_data.records import write_json_atomically
from tooliqa_data.summary import DatasetSummary, Efficiency, ToolRow, average

PLCC_NOTE = (
    "PLCC = Pearson correlation of the raw predicted scores with MOS (torchmetrics, no fitting): the headline "
    "convention of the tables. plcc_logistic = Pearson after the 4-parameter logistic fit "
    "f(x) = (b1-b2)/(1+exp(-(x-b3)/|b4|))+b2 (scipy curve_fit, init [max(y), min(y), mean(x), std(x)/4], "
    "raw PLCC when the fit fails). SRCC = Spearman (torchmetrics), KRCC = Kendall tau-b (scipy). "
    "Parse failures and error rows are excluded from the correlations and counted per dataset."
)


def _finite(value: object) -> object:
    """JSON has no NaN: replace non-finite floats by null, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def fmt(value: float) -> str:
    """Paper style: three decimals without the leading zero (``.816``, ``-.052``); ``—`` when undefined."""
    if value is None or not math.isfinite(value):
        return "—"
    text = f"{value:.3f}"
    return text.replace("0.", ".", 1) if abs(value) < 1 else text


def write_metrics_json(
    path: Path,
    summaries: Sequence[DatasetSummary],
    tools: dict[str, list[ToolRow]],
    efficiencies: dict[str, Efficiency],
    metadata: RunMetadata,
    config: EvalConfig,
) -> None:
    mean_srcc, mean_plcc, mean_plcc_logistic = average(summaries)
    document = {
        "run": {
            "model": metadata.model,
            "seed": metadata.seed,
            "settings": dict(metadata.settings),
            "weights": _weights_digest(metadata.weights),
            "eval": dataclasses.asdict(config),
        },
        "plcc_note": PLCC_NOTE,
        "datasets": {s.name: dataclasses.asdict(s) for s in summaries},
        "average": {"srcc": mean_srcc, "plcc": mean_plcc, "plcc_logistic": mean_plcc_logistic},
        "tools": {name: [dataclasses.asdict(row) for row in rows] for name, rows in tools.items()},
        "efficiency": {name: dataclasses.asdict(e) for name, e in efficiencies.items()},
    }
    write_json_atomically(path, _finite(document))


def _weights_digest(weights: Mapping[str, str]) -> dict[str, object] | None:
    """One digest over the per-tensor fingerprint (run.json keeps the whole map)."""
    if not weights:
        return None
    text = "\n".join(f"{name}={digest}" for name, digest in sorted(weights.items()))
    return {"sha256": hashlib.sha256(text.encode()).hexdigest()[:16], "tensors": len(weights)}


def _cell(summary: DatasetSummary, logistic: bool) -> str:
    if summary.metrics is None:
        return "—"
    m = summary.metrics
    return f"{fmt(m.srcc)}/{fmt(m.plcc_logistic if logistic else m.plcc)}"


def _interval(ci: tuple[float, float] | None) -> str:
    return "—" if ci is None else f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def write_table_md(path: Path, summaries: Sequence[DatasetSummary], metadata: RunMetadata) -> None:
    """Table 1 layout: one column per dataset plus Avg, cells ``SRCC/PLCC``; then per-dataset details."""
    model = metadata.model or "model"
    mean_srcc, mean_plcc, mean_plcc_logistic = average(summaries)
    names = [s.name for s in summaries]
    lines = [
        f"# Evaluation: {model}",
        "",
        "SRCC/PLCC per dataset (paper Table 1 layout). **PLCC on the first row is the raw Pearson correlation "
        "(no fitting)**; the second row uses PLCC after the 4-parameter logistic fit. Avg is the mean over labeled "
        "datasets.",
        "",
        "| Method | " + " | ".join(names) + " | Avg |",
        "|---|" + "---|" * (len(names) + 1),
        f"| {model} | " + " | ".join(_cell(s, False) for s in summaries) + f" | {fmt(mean_srcc)}/{fmt(mean_plcc)} |",
        f"| {model} (PLCC after logistic fit) | "
        + " | ".join(_cell(s, True) for s in summaries)
        + f" | {fmt(mean_srcc)}/{fmt(mean_plcc_logistic)} |",
        *[f"\n**{s.name}: {s.note}.**" for s in summaries if s.metrics is not None and s.note],
        "",
        "## Details",
        "",
        "| dataset | rows | scored | parse failures | errors | SRCC | PLCC | PLCC (logistic) | KRCC "
        "| SRCC CI | PLCC CI | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        m = s.metrics
        values = (
            [fmt(m.srcc), fmt(m.plcc), fmt(m.plcc_logistic), fmt(m.krcc), _interval(m.srcc_ci), _interval(m.plcc_ci)]
            if m is not None
            else ["—"] * 6
        )
        lines.append(
            f"| {s.name} | {s.n_rows} | {s.n_scored} | {s.n_parse_failures} | {s.n_errors} | "
            + " | ".join(values)
            + f" | {s.note} |"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_tools_md(
    path: Path, tools: dict[str, list[ToolRow]], efficiencies: dict[str, Efficiency], metadata: RunMetadata
) -> None:
    """Tables 6/7 (tool usage: frequency and SRCC/PLCC by category) per dataset, then Table 8 (efficiency)."""
    model = metadata.model or "model"
    lines = [
        f"# Tool usage and efficiency: {model}",
        "",
        "Categories partition the scored rows: tool-free = no call; tool = ≥ 1 successful call (split into "
        "`only <tool>` and `mixed`); failed calls only = calls issued, none ran. F = share of scored rows. "
        "PLCC is raw (no fitting).",
    ]
    for name, rows in tools.items():
        lines += ["", f"## {name}", "", "| 𝒯 | F (%) | N | SRCC | PLCC |", "|---|---|---|---|---|"]
        lines += [f"| {r.category} | {r.frequency:.1f} | {r.n} | {fmt(r.srcc)} | {fmt(r.plcc)} |" for r in rows]
    lines += [
        "",
        "## Efficiency (paper Table 8)",
        "",
        "Speed = images / summed per-image seconds of the assessor (image loading excluded); OTokens and Tool Calls "
        "are means per assessed image.",
        "",
        "| dataset | images | Speed (it/s) | OTokens | Tool Calls |",
        "|---|---|---|---|---|",
    ]
    for name, e in efficiencies.items():
        lines.append(
            f"| {name} | {e.images} | {e.images_per_second:.2f} | {e.output_tokens_per_image:.2f} "
            f"| {e.tool_calls_per_image:.2f} |"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
