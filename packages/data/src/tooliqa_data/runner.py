"""The evaluation runner: assess every image of some datasets with an :class:`Assessor` and write the paper's tables.

Per image the runner loads the file (bad files become error rows: the run goes on), batches images into the
assessor, and writes one record: its trajectories.jsonl line (the journal, the source of truth), then its
predictions.csv row (``tooliqa_data.records``). A rerun into the same folder repairs whatever a kill left, skips the
images already there (rows of the :data:`~tooliqa_data.records.RETRIED` statuses are tried again) and appends; every
summary — metrics.json, table.md, tools.md, scatter PNGs, report.html — is then recomputed from the full record, so
a resumed run reports exactly what an uninterrupted one would. One run at a time holds the folder
(:class:`~tooliqa_data.records.FolderLock`); run.json is replaced atomically.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from tooliqa_data.assessment import Assessment, Assessor, RunMetadata
from tooliqa_data.config import EvalConfig
from tooliqa_data.images import ImageError, load_image
from tooliqa_data.items import Dataset, IQAItem
from tooliqa_data.plots import safe_name, scatter_plot
from tooliqa_data.records import (
    ASSESSOR_ERROR,
    PREDICTIONS,
    RETRIED,
    TRAJECTORIES,
    FolderLock,
    PredictionRow,
    PredictionWriter,
    read_predictions,
    row_from_assessment,
    write_json_atomically,
)
from tooliqa_data.report import ASSETS, report_keys, view_path, write_report
from tooliqa_data.summary import (
    DatasetSummary,
    Efficiency,
    ToolRow,
    average,
    efficiency,
    summarize_dataset,
    tool_breakdown,
)
from tooliqa_data.tables import write_metrics_json, write_table_md, write_tools_md

log = logging.getLogger(__name__)
RUN_FILE = "run.json"


@dataclass(frozen=True)
class EvalResult:
    """What :func:`evaluate` computed and where it wrote it."""

    out_dir: Path
    """The output folder."""
    summaries: tuple[DatasetSummary, ...]
    """Per dataset, in the order given."""
    average_srcc: float
    """Mean SRCC over labeled datasets (Table 1's Avg)."""
    average_plcc: float
    """Mean raw PLCC over labeled datasets."""
    tools: dict[str, list[ToolRow]]
    """Tool-usage breakdown per dataset (Tables 6/7)."""
    efficiency: dict[str, Efficiency]
    """Table 8's row per dataset and ``"all"``."""
    assessed: int
    """Images assessed by this call (0 when everything was already done)."""
    skipped: int
    """Images skipped because an earlier run already wrote them."""


@dataclass(frozen=True)
class _Loaded:
    item: IQAItem
    image: torch.Tensor | None
    error: ImageError | None


def _identity(metadata: RunMetadata) -> dict:
    identity = {"model": metadata.model, "seed": metadata.seed, "settings": dict(metadata.settings)}
    if metadata.weights:
        identity["weights"] = dict(metadata.weights)
    return json.loads(json.dumps(identity))  # as it reads back from run.json


def _flat(tree: object, prefix: str = "") -> dict[str, object]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, object] = {}
    for key, value in tree.items():
        flat.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


class ResumeMismatchError(ValueError):
    """The output folder holds predictions of another model, other weights or other settings."""


def check_resumable(out_dir: Path, metadata: RunMetadata, resume: bool = True) -> dict | None:
    """Raise if ``out_dir`` holds predictions of another model, other weights or other settings (one line naming
    the differing keys); returns the recorded run document, or None when there is none to match.

    Cheap (no model needed): ``apps/eval.py`` calls it before loading anything."""
    path = out_dir / RUN_FILE
    if not resume or not path.exists() or not (out_dir / TRAJECTORIES).exists():
        return None
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
        recorded_identity = recorded["identity"]
    except (json.JSONDecodeError, KeyError, TypeError):
        # only an older runner's interrupted write leaves this (run.json is now replaced atomically)
        log.warning("%s is empty or unreadable (an interrupted write): rewriting it for this run", path)
        return None
    if "weights" not in recorded_identity or not metadata.weights:  # a folder (or a run) without a fingerprint
        recorded_identity = {k: v for k, v in recorded_identity.items() if k != "weights"}
        identity = {k: v for k, v in _identity(metadata).items() if k != "weights"}
    else:
        identity = _identity(metadata)
    old, new = _flat(recorded_identity), _flat(identity)
    differing = sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))
    if differing:
        shown = ", ".join(f"{key} ({old.get(key)!r} → {new.get(key)!r})" for key in differing[:4])
        more = f" and {len(differing) - 4} more" if len(differing) > 4 else ""
        raise ResumeMismatchError(
            f"{out_dir} holds predictions of another run: {shown}{more} differ; pass another --out, or "
            "--eval.resume false to start it afresh"
        )
    return recorded


def _record_run(out_dir: Path, metadata: RunMetadata, config: EvalConfig) -> None:
    document = {"identity": _identity(metadata), "eval": dataclasses.asdict(config)}
    write_json_atomically(out_dir / RUN_FILE, document)


def _batches(items: Sequence[IQAItem], size: int) -> Iterator[Sequence[IQAItem]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _record(row: PredictionRow, assessment: Assessment | None, views: list[str | None]) -> dict:
    """The trajectories.jsonl line of one image (a JSON document, so a plain dict here)."""
    record = {
        **{key: getattr(row, key) for key in ("dataset", "image", "mos", "score", "status", "error")},
        "output_tokens": row.output_tokens,
        "seconds": row.seconds,
        "tool_calls": [],
        "turns": [],
    }
    if assessment is not None:
        record["tool_calls"] = [dataclasses.asdict(call) for call in assessment.tool_calls]
        record["turns"] = [
            {"kind": turn.kind, "text": turn.text, "has_view": turn.view_png is not None, "view": view}
            for turn, view in zip(assessment.turns, views)
        ]
    return record


class _Run:
    """State of one :func:`evaluate` call: the settings, the output writer and the report sample's keys."""

    def __init__(self, out_dir: Path, assessor: Assessor, config: EvalConfig, keys: set[tuple[str, str]]) -> None:
        self.out_dir, self.assessor, self.config, self.keys = out_dir, assessor, config, keys
        self.writer = PredictionWriter(out_dir)
        self.assessed = 0

    def load(self, item: IQAItem) -> _Loaded:
        c = self.config
        try:
            image = load_image(
                item.image, min_side=c.min_side, max_pixels=c.max_pixels, max_side=c.max_side, keep_depth=True
            )
            return _Loaded(item, image, None)
        except ImageError as exc:
            return _Loaded(item, None, exc)
        except Exception as exc:  # a decoder bug on one odd file must not end the run: it is that image's error
            return _Loaded(item, None, ImageError(item.image, f"could not be decoded ({type(exc).__name__}: {exc})"))

    def error_row(self, item: IQAItem, status: str, message: str) -> None:
        row = PredictionRow(item.dataset, str(item.image), item.mos, None, status, message)
        self.writer.write(row, _record(row, None, []))

    def assess(self, loaded: Sequence[_Loaded]) -> None:
        for entry in loaded:
            if entry.error is not None:
                self.error_row(entry.item, entry.error.kind, str(entry.error))
        good = [entry for entry in loaded if entry.image is not None]
        if not good:
            return
        items = [entry.item for entry in good]
        start = time.perf_counter()
        try:
            results = self.assessor(items, [entry.image for entry in good])
            if len(results) != len(items):
                raise RuntimeError(f"assessor returned {len(results)} assessments for {len(items)} images")
        except Exception as exc:  # the batch is lost, not the run: its rows are retried on resume
            log.warning("assessor failed on a batch of %d images: %s", len(items), exc)
            for item in items:
                self.error_row(item, ASSESSOR_ERROR, f"{type(exc).__name__}: {exc}")
            return
        share = (time.perf_counter() - start) / len(items)
        for item, assessment in zip(items, results):
            if assessment.seconds <= 0:
                assessment = dataclasses.replace(assessment, seconds=share)
            row = row_from_assessment(item.dataset, str(item.image), item.mos, assessment)
            self.writer.write(row, _record(row, assessment, self.save_views(row, assessment)))
            self.assessed += 1

    def save_views(self, row: PredictionRow, assessment: Assessment) -> list[str | None]:
        """Save the tool views of report-sampled images; returns each turn's view path relative to the folder."""
        views: list[str | None] = []
        for index, turn in enumerate(assessment.turns):
            if turn.view_png is None or row.key not in self.keys:
                views.append(None)
                continue
            path = view_path(self.out_dir, row.dataset, row.image, index)
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(turn.view_png)
            views.append(path.relative_to(self.out_dir).as_posix())
        return views


def evaluate(
    datasets: Sequence[Dataset],
    assessor: Assessor,
    out_dir: str | Path,
    config: EvalConfig | None = None,
    metadata: RunMetadata | None = None,
) -> EvalResult:
    """Assess every image of ``datasets`` and write predictions, trajectories, tables, plots and the HTML report.

    Args:
        datasets: loaded datasets (names must differ); their ``problems`` (missing images) become error rows.
        assessor: the model, see :class:`Assessor`.
        out_dir: output folder (created); see the package README for the files.
        config: runner settings (default :class:`EvalConfig`).
        metadata: model id, seed and sampling/protocol settings, recorded in run.json and metrics.json; a resumed
            run must match them.
    """
    config = config or EvalConfig()
    metadata = metadata or RunMetadata()
    out_dir = Path(out_dir)
    names = [dataset.name for dataset in datasets]
    if len(set(names)) != len(names):
        raise ValueError(f"dataset names must differ, got {names}")
    out_dir.mkdir(parents=True, exist_ok=True)
    with FolderLock(out_dir):
        if not config.resume:
            for stale in (PREDICTIONS, TRAJECTORIES, RUN_FILE):
                (out_dir / stale).unlink(missing_ok=True)
            shutil.rmtree(out_dir / ASSETS, ignore_errors=True)
        check_resumable(out_dir, metadata, config.resume)
        _record_run(out_dir, metadata, config)
        selected = [dataclasses.replace(d, items=d.items[: config.limit]) if config.limit else d for d in datasets]
        keys = report_keys(selected, config.report_samples, config.seed)
        run = _Run(out_dir, assessor, config, keys)
        try:
            # Failed batches, missing and unreadable files are retried: the cause may be gone by now.
            done = {key for key, (row, _) in run.writer.records.items() if row.status not in RETRIED}
            skipped = 0
            pending: list[IQAItem] = []
            for dataset in selected:
                for problem in dataset.problems:
                    if problem.item is not None and (dataset.name, str(problem.item.image)) not in done:
                        item = dataclasses.replace(problem.item, dataset=dataset.name)
                        run.error_row(item, problem.kind, f"{problem.source}:{problem.line}: {problem.message}")
                fresh = [item for item in dataset.items if (dataset.name, str(item.image)) not in done]
                skipped += len(dataset.items) - len(fresh)
                pending += [dataclasses.replace(item, dataset=dataset.name) for item in fresh]
            _assess_all(run, pending)
        finally:  # an interrupt keeps every record written so far: the next run resumes after it
            run.writer.close()
        return _summarize(out_dir, selected, config, metadata, keys, run.assessed, skipped)


def _assess_all(run: _Run, pending: Sequence[IQAItem]) -> None:
    """Assess in batches while a thread pool decodes the next batch (decoding overlaps the model)."""
    from tqdm.auto import tqdm

    batches = list(_batches(pending, run.config.batch_size))
    with (
        ThreadPoolExecutor(run.config.load_workers) as pool,
        tqdm(total=len(pending), unit="img", disable=not run.config.progress, desc="evaluate") as bar,
    ):
        ahead: list[Future[_Loaded]] | None = [pool.submit(run.load, item) for item in batches[0]] if batches else None
        for index, batch in enumerate(batches):
            current = [future.result() for future in ahead or []]
            if index + 1 < len(batches):
                ahead = [pool.submit(run.load, item) for item in batches[index + 1]]
            bar.set_postfix_str(batch[0].dataset, refresh=False)
            run.assess(current)
            run.writer.sync()
            bar.update(len(batch))


def _summarize(
    out_dir: Path,
    datasets: Sequence[Dataset],
    config: EvalConfig,
    metadata: RunMetadata,
    keys: set[tuple[str, str]],
    assessed: int,
    skipped: int,
) -> EvalResult:
    wanted = {dataset.name: {str(item.image) for item in dataset.items} for dataset in datasets}
    for dataset in datasets:
        wanted[dataset.name].update(str(p.item.image) for p in dataset.problems if p.item is not None)
    rows = [row for row in read_predictions(out_dir) if row.image in wanted.get(row.dataset, ())]
    by_dataset = {name: [row for row in rows if row.dataset == name] for name in wanted}
    summaries = tuple(
        summarize_dataset(
            name, by_dataset[name], bootstrap=config.bootstrap, confidence=config.confidence, seed=config.seed
        )
        for name in wanted
    )
    tools = {name: tool_breakdown(by_dataset[name]) for name in wanted}
    speeds = {name: efficiency(by_dataset[name]) for name in wanted} | {"all": efficiency(rows)}
    write_metrics_json(out_dir / "metrics.json", summaries, tools, speeds, metadata, config)
    write_table_md(out_dir / "table.md", summaries, metadata)
    write_tools_md(out_dir / "tools.md", tools, speeds, metadata)
    if config.plots:
        for summary in summaries:
            scatter_plot(out_dir / f"scatter_{safe_name(summary.name)}.png", summary, by_dataset[summary.name])
    if config.report_samples:
        title = f"Tool-IQA evaluation: {metadata.model or 'model'}"
        samples = int((metadata.settings or {}).get("samples") or 1)
        write_report(out_dir / "report.html", out_dir, rows, summaries, keys, title, config.max_side, samples)
    mean_srcc, mean_plcc, _ = average(summaries)
    return EvalResult(out_dir, summaries, mean_srcc, mean_plcc, tools, speeds, assessed, skipped)
