"""The evaluation's per-image records: one journal line per image, and predictions.csv as its table.

``trajectories.jsonl`` is the single source of truth: each line is one image's whole record (its prediction row
under ``"prediction"``, its tool calls and turns), written and flushed before the matching predictions.csv row. A
kill can only cut the journal's last line; on resume that partial line is dropped, a key written twice (a retried
row) counts once, last record wins, and predictions.csv is rebuilt from the journal (atomically), so a cut CSV row, a
stray second header or a row without its trajectory cannot survive a resume. :class:`FolderLock` keeps a second
writer out of the folder.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from tooliqa_data.assessment import Assessment
from tooliqa_data.atomic import replace_atomically

PREDICTIONS = "predictions.csv"
TRAJECTORIES = "trajectories.jsonl"
NON_FINITE = "non_finite_score"
"""Status of rows whose assessor returned NaN or an infinite score (kept out of the metrics like parse failures)."""
ASSESSOR_ERROR = "assessor_error"
"""Status of rows whose batch raised inside the assessor; they are retried on resume."""
LOCK_FILE = ".lock"
"""The output folder's lock file (``fcntl.flock``; holds the writer's pid)."""
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
    (``missing_image``, ``unreadable``, ``not_a_file``, ``corrupt``, ``too_small``, ``decompression_bomb``)."""
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


IMAGE_STATUSES = frozenset(
    {"missing_image", "unreadable", "not_a_file", "corrupt", "too_small", "decompression_bomb", "image_error"}
)
RETRIED = frozenset({ASSESSOR_ERROR, "missing_image", "unreadable", "not_a_file"})
"""Statuses a resumed run tries again: their cause (memory, a late copy, a permission) may be gone by now. The
others (``corrupt``, ``too_small``, a score, ...) are properties of the file or the model and are kept."""


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


def _row_cells(row: PredictionRow) -> list[str]:
    return [_cell(getattr(row, column)) for column in COLUMNS]


def _row_from_json(path: Path, line: int, data: object) -> PredictionRow:
    fields = {f.name for f in dataclasses.fields(PredictionRow)}
    if not isinstance(data, dict) or set(data) != fields:
        raise ValueError(
            f"{path}:{line}: no 'prediction' record of this version; resume it with the version that wrote it, or "
            "start afresh (resume=False / a new --out)"
        )
    return PredictionRow(**data)


def read_journal(out_dir: Path) -> dict[tuple[str, str], tuple[PredictionRow, dict]]:
    """``(dataset, image) → (row, record)`` from ``trajectories.jsonl``, last record of a key wins, in write order.

    A partial last line (a kill mid-write) is ignored; any other line that is not one JSON record is an error
    naming the file and line."""
    path = out_dir / TRAJECTORIES
    found: dict[tuple[str, str], tuple[PredictionRow, dict]] = {}
    if not path.exists():
        return found
    with path.open("rb") as handle:
        data = handle.read()
    lines = data.split(b"\n")
    complete = lines[:-1]  # the text after the last newline, if any, is a cut write
    for number, raw in enumerate(complete, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}:{number}: not a JSON record ({exc}); the journal was edited or damaged") from None
        row = _row_from_json(path, number, record.get("prediction") if isinstance(record, dict) else None)
        found.pop(row.key, None)  # re-insert so the order is that of the last write
        found[row.key] = (row, record)
    return found


def write_json_atomically(path: Path, document: object) -> None:
    """``path`` ← ``document`` as indented JSON, atomically (a kill leaves the old file or the new, never empty)."""
    replace_atomically(path, lambda handle: handle.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n"))


class PredictionWriter:
    """Appends one record per image: the journal line (flushed) first, then its predictions.csv row.

    Opening it repairs the folder: the journal and predictions.csv are rewritten from the journal's complete records,
    one per key (a partial last line is dropped; atomically, so a kill during the repair loses nothing).
    """

    def __init__(self, out_dir: Path) -> None:
        self.csv_path, self.jsonl_path = out_dir / PREDICTIONS, out_dir / TRAJECTORIES
        self.records = read_journal(out_dir)
        """The records already written, ``(dataset, image) → (row, journal record)``."""
        entries = list(self.records.values())

        def journal(handle) -> None:
            for _, record in entries:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")

        def table(handle) -> None:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            writer.writerows(_row_cells(row) for row, _ in entries)

        replace_atomically(self.jsonl_path, journal)
        replace_atomically(self.csv_path, table)
        self._csv = self.csv_path.open("a", newline="", encoding="utf-8")
        self._jsonl = self.jsonl_path.open("a", encoding="utf-8")
        self._writer = csv.writer(self._csv)

    def write(self, row: PredictionRow, trajectory: dict) -> None:
        # journal first: a kill between the two leaves a record whose CSV row the next open rebuilds
        record = {**trajectory, "prediction": dataclasses.asdict(row)}
        self._jsonl.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._jsonl.flush()
        self._writer.writerow(_row_cells(row))
        self._csv.flush()

    def sync(self) -> None:
        """Force both files to the disk (after each batch: a power cut then loses at most one batch)."""
        for handle in (self._jsonl, self._csv):
            handle.flush()
            os.fsync(handle.fileno())

    def close(self) -> None:
        self._csv.close()
        self._jsonl.close()


def read_predictions(out_dir: Path) -> list[PredictionRow]:
    """Rows of ``out_dir``, one per image (the last row of a repeated key wins; empty if none).

    Read from the journal when there is one (the source of truth), else from a predictions.csv alone (a folder
    written by another tool)."""
    if (out_dir / TRAJECTORIES).exists():
        return [row for row, _ in read_journal(out_dir).values()]
    path = out_dir / PREDICTIONS
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = tuple(next(reader, ()))
        if header and header != COLUMNS:
            raise ValueError(f"{path}: unexpected header {list(header)}; expected {list(COLUMNS)}")
        latest: dict[tuple[str, str], PredictionRow] = {}
        for fields in reader:
            if tuple(fields) == COLUMNS:  # a second header (two writers, or concatenated files)
                continue
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
            latest.pop(row.key, None)
            latest[row.key] = row
    return list(latest.values())


def read_trajectories(out_dir: Path, keys: set[tuple[str, str]]) -> dict[tuple[str, str], dict]:
    """The trajectories.jsonl records of the given ``(dataset, image)`` keys (last record of a key wins)."""
    return {key: record for key, (_, record) in read_journal(out_dir).items() if key in keys}


class FolderLockedError(RuntimeError):
    """Another process is writing the same output folder."""


class FolderLock:
    """An exclusive ``fcntl.flock`` on ``out_dir/.lock`` for the life of a run: a second writer fails at once.

    The kernel drops the lock when the holder exits, a kill -9 included, so a crashed run never leaves a stale lock.
    """

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / LOCK_FILE
        self._handle = None

    def __enter__(self) -> FolderLock:
        import fcntl

        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise FolderLockedError(
                f"{self.path.parent} is being written by another evaluation (pid {holder}); wait for it to finish "
                "or pass another --out"
            ) from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()  # closing releases the flock
            self._handle = None
