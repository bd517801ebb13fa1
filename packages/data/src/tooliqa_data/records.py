"""The evaluation's per-image records: predictions.csv rows and trajectories.jsonl lines, written append-only.

Both files are appended one flushed line per image, so an interrupted run loses at most the line being written; on
resume a partial last line is cut off, rows already present are skipped, and a key written twice (a retried
``assessor_error``) counts once, last row wins.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

from tooliqa_data.assessment import Assessment

PREDICTIONS = "predictions.csv"
TRAJECTORIES = "trajectories.jsonl"
NON_FINITE = "non_finite_score"
"""Status of rows whose assessor returned NaN or an infinite score (kept out of the metrics like parse failures)."""
ASSESSOR_ERROR = "assessor_error"
"""Status of rows whose batch raised inside the assessor; they are retried on resume."""
COLUMNS = (
    "dataset", "image", "mos", "score", "status", "error", "n_tool_calls", "n_failed_calls", "tools", "tool_calls",
    "output_tokens", "seconds",
)  # fmt: skip


@dataclass(frozen=True)
class PredictionRow:
    """One row of predictions.csv."""

    dataset: str
    """Dataset name."""
    image: str
    """Image path as the dataset resolved it."""
    mos: float | None
    """Ground-truth MOS (higher = better), ``None`` for unlabeled images."""
    score: float | None
    """Predicted score, ``None`` on parse failures and errors."""
    status: str
    """``ok``, ``parse_failure``, an assessor's own tag, ``assessor_error``, or an image error kind
    (``missing_image``, ``corrupt``, ``too_small``, ``decompression_bomb``)."""
    error: str = ""
    """Error message or failure detail."""
    n_tool_calls: int = 0
    """Tool calls issued."""
    n_failed_calls: int = 0
    """Tool calls that did not parse or run."""
    tools: str = ""
    """Tools with at least one successful call, sorted, ``;``-separated (``""`` = tool-free or failed calls only)."""
    tool_calls: str = "[]"
    """JSON list of ``{"name", "arguments", "ok"}`` in call order."""
    output_tokens: int = 0
    """Tokens generated for this image."""
    seconds: float = 0.0
    """Seconds spent assessing this image."""

    @property
    def key(self) -> tuple[str, str]:
        return self.dataset, self.image

    @property
    def assessed(self) -> bool:
        """True when the assessor ran on this image (not an image error or a failed batch)."""
        return self.status not in IMAGE_STATUSES and self.status != ASSESSOR_ERROR


IMAGE_STATUSES = frozenset({"missing_image", "corrupt", "too_small", "decompression_bomb", "image_error"})


def row_from_assessment(dataset: str, image: str, mos: float | None, assessment: Assessment) -> PredictionRow:
    """A predictions.csv row for one assessed image (a NaN or infinite score becomes a ``non_finite_score`` row)."""
    calls = assessment.tool_calls
    score, status, error = assessment.score, assessment.status, assessment.detail or ""
    if score is not None and not math.isfinite(score):
        score, status, error = None, NON_FINITE, f"assessor returned score {score!r}"
    return PredictionRow(
        dataset=dataset,
        image=image,
        mos=mos,
        score=score,
        status=status,
        error=error,
        n_tool_calls=len(calls),
        n_failed_calls=sum(not call.ok for call in calls),
        tools=";".join(sorted({call.name for call in calls if call.ok})),
        tool_calls=json.dumps(
            [{"name": c.name, "arguments": _arguments(c.arguments_json), "ok": c.ok} for c in calls],
            ensure_ascii=False,
        ),
        output_tokens=assessment.output_tokens,
        seconds=assessment.seconds,
    )


def _arguments(arguments_json: str) -> object:
    try:
        return json.loads(arguments_json)
    except json.JSONDecodeError:
        return arguments_json  # keep what the model wrote, as a string


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # round-trips exactly, so a resumed run recomputes identical metrics
    return str(value)


def _optional_float(text: str) -> float | None:
    return float(text) if text != "" else None


def _repair_tail(path: Path) -> None:
    """Cut a partial last line (an interrupted write) so appends start on a fresh line."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


class PredictionWriter:
    """Appends rows to predictions.csv and trajectories.jsonl under ``out_dir`` (one flushed line each)."""

    def __init__(self, out_dir: Path) -> None:
        self.csv_path, self.jsonl_path = out_dir / PREDICTIONS, out_dir / TRAJECTORIES
        for path in (self.csv_path, self.jsonl_path):
            if path.exists():
                _repair_tail(path)
        new = not self.csv_path.exists() or self.csv_path.stat().st_size == 0
        self._csv = self.csv_path.open("a", newline="", encoding="utf-8")
        self._jsonl = self.jsonl_path.open("a", encoding="utf-8")
        self._writer = csv.writer(self._csv)
        if new:
            self._writer.writerow(COLUMNS)
            self._csv.flush()

    def write(self, row: PredictionRow, trajectory: dict) -> None:
        self._writer.writerow([_cell(getattr(row, column)) for column in COLUMNS])
        self._csv.flush()
        self._jsonl.write(json.dumps(trajectory, ensure_ascii=False) + "\n")
        self._jsonl.flush()

    def close(self) -> None:
        self._csv.close()
        self._jsonl.close()


def read_predictions(out_dir: Path) -> list[PredictionRow]:
    """Rows of ``out_dir/predictions.csv`` (empty if absent), one per image: the last row of a repeated key wins."""
    path = out_dir / PREDICTIONS
    if not path.exists():
        return []
    _repair_tail(path)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = tuple(next(reader, ()))
        if header and header != COLUMNS:
            raise ValueError(f"{path}: unexpected header {list(header)}; expected {list(COLUMNS)}")
        latest: dict[tuple[str, str], PredictionRow] = {}
        for fields in reader:
            if len(fields) != len(COLUMNS):
                raise ValueError(f"{path}:{reader.line_num}: {len(fields)} cells, expected {len(COLUMNS)}")
            cells = dict(zip(COLUMNS, fields))
            row = PredictionRow(
                dataset=cells["dataset"],
                image=cells["image"],
                mos=_optional_float(cells["mos"]),
                score=_optional_float(cells["score"]),
                status=cells["status"],
                error=cells["error"],
                n_tool_calls=int(cells["n_tool_calls"]),
                n_failed_calls=int(cells["n_failed_calls"]),
                tools=cells["tools"],
                tool_calls=cells["tool_calls"],
                output_tokens=int(cells["output_tokens"]),
                seconds=float(cells["seconds"]),
            )
            latest.pop(row.key, None)  # re-insert so the order is that of the last write
            latest[row.key] = row
    return list(latest.values())


def read_trajectories(out_dir: Path, keys: set[tuple[str, str]]) -> dict[tuple[str, str], dict]:
    """The trajectories.jsonl records of the given ``(dataset, image)`` keys (last record of a key wins)."""
    path = out_dir / TRAJECTORIES
    found: dict[tuple[str, str], dict] = {}
    if not path.exists():
        return found
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            record = json.loads(line)
            key = (record["dataset"], record["image"])
            if key in keys:
                found[key] = record
    return found
