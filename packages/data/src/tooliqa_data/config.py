"""Evaluation settings (:class:`EvalConfig`, CLI-ready) and ``NAME=ROOT[:LABELS]`` dataset specs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tooliqa_data.datasets import DATASETS, canonical_name, load_dataset
from tooliqa_data.images import MAX_PIXELS, MIN_SIDE
from tooliqa_data.items import Dataset


@dataclass(frozen=True)
class EvalConfig:
    """How :func:`tooliqa_data.evaluate` runs (the model's own sampling settings go in ``RunMetadata``)."""

    batch_size: int = 8
    """Images per assessor call."""
    resume: bool = True
    """Skip images already in the output folder's predictions.csv and append; False starts the folder afresh."""
    limit: int | None = None
    """Assess at most this many images per dataset (the first ones in label order); None = all."""
    max_side: int | None = None
    """Downscale images whose longer side exceeds this before assessment (None = as stored)."""
    min_side: int = MIN_SIDE
    """Images with a shorter side are error rows (``too_small``)."""
    max_pixels: int = MAX_PIXELS
    """Images declaring more pixels are error rows (``decompression_bomb``)."""
    load_workers: int = 2
    """Threads decoding images ahead of the assessor."""
    bootstrap: int = 0
    """Bootstrap resamples for SRCC/PLCC confidence intervals (0 = none)."""
    confidence: float = 0.95
    """Confidence level of the bootstrap intervals."""
    seed: int = 0
    """Seed of the bootstrap and of which images the HTML report samples."""
    report_samples: int = 6
    """Images per dataset shown in report.html with their tool views and turns (0 = no report)."""
    plots: bool = True
    """Write a predicted-vs-MOS scatter PNG per labeled dataset."""
    progress: bool = True
    """Show a tqdm progress bar (images/s, ETA)."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {self.batch_size}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be ≥ 1 or None, got {self.limit}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if self.load_workers < 1 or self.report_samples < 0 or self.bootstrap < 0:
            raise ValueError("load_workers must be ≥ 1; report_samples and bootstrap ≥ 0")


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed ``NAME[/SPLIT]=ROOT[:LABELS]`` command-line dataset spec."""

    name: str
    """Name in the outputs: the adapter's title (``CLIVE``, ``KADID-10K/test``) or the name as written."""
    adapter: str
    """Registry key of the adapter: ``name`` when it is one, else ``csv`` (labels given) or ``folder`` (none)."""
    root: Path
    """Dataset folder."""
    labels: Path | None = None
    """Label file, if given."""
    split: str | None = None
    """Split for adapters that have them (KADID-10K, KonIQ-10k)."""

    def load(self, **options: object) -> Dataset:
        """Read the dataset (``options``: further ``AdapterOptions`` fields)."""
        return load_dataset(self.adapter, self.root, self.labels, self.split, dataset_name=self.name, **options)


def parse_dataset_spec(spec: str) -> DatasetSpec:
    """Parse ``NAME[/SPLIT]=ROOT[:LABELS]``.

    ``NAME`` is an adapter name or alias (``koniq``, ``clive``, ``kadid10k/test``) or any other name: then the
    dataset is a generic ``image,mos`` manifest when ``LABELS`` is given, else an unlabeled folder. ``ROOT`` must not
    contain ``:``. Examples: ``clive=/data/ChallengeDB_release``, ``kadid10k/test=/data/kadid10k``,
    ``mine=/photos:/photos/scores.csv``, ``holiday=/photos/2024`` (unlabeled, scores only).
    """
    head, eq, tail = spec.partition("=")
    if not eq or not head or not tail:
        raise ValueError(f"dataset spec {spec!r} is not NAME=ROOT[:LABELS]")
    name, _, split = head.partition("/")
    root, _, labels = tail.partition(":")
    try:
        adapter = canonical_name(name)
        display = DATASETS[adapter].title if adapter not in ("csv", "folder") else Path(root).name
    except KeyError:
        adapter, display = ("csv" if labels else "folder"), name
        close = closest_name(name)
        if not labels and close is not None:
            # a typo of a known name would silently become an unlabeled folder (no metrics, exit 0)
            raise ValueError(
                f"unknown dataset name {name!r}: did you mean {close!r}? (an unknown name without :LABELS reads the "
                "folder unlabeled; for that, pick a name unlike a known one)"
            ) from None
    display += f"/{split}" if split else ""
    return DatasetSpec(display, adapter, Path(root), Path(labels) if labels else None, split or None)


def closest_name(name: str) -> str | None:
    """The known dataset name or alias nearest to a misspelt ``name`` (``biq2012`` → ``biq2021``), if any is close."""
    import difflib

    from tooliqa_data.datasets import _ALIASES

    key = re.sub(r"[^a-z0-9]", "", name.lower())
    known = sorted((set(DATASETS) | set(_ALIASES)) - {"csv", "tsv", "folder", "manifest"})
    match = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    return match[0] if match else None


def load_specs(specs: Sequence[str], **options: object) -> list[Dataset]:
    """Parse and load several specs (see :func:`parse_dataset_spec`), in order."""
    return [parse_dataset_spec(spec).load(**options) for spec in specs]
