"""The records every dataset adapter produces: one image with its MOS, problems found on the way, and label errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class IQAItem:
    """One image to assess. Higher ``mos`` = better quality in every dataset (DMOS is flipped when read)."""

    image: Path
    """Path of the image file (the adapter resolves it under the dataset root)."""
    mos: float | None
    """Mean opinion score on the dataset's own scale, higher = better; ``None`` for unlabeled images."""
    dataset: str
    """Name of the dataset the item belongs to (the key rows are grouped by in the evaluation outputs)."""
    name: str = ""
    """The image as its label file lists it, relative to the dataset root (normalised): stable when the dataset
    moves, so it keys the image's sampling seeds (``tooliqa_agent.seeding``). Empty: ``image`` is the key."""


@dataclass(frozen=True)
class Problem:
    """A label row that did not become a usable item, kept so that nothing is dropped silently."""

    source: Path
    """The label file the row came from."""
    line: int
    """1-based line (or entry) number in ``source``."""
    message: str
    """What is wrong, e.g. ``"image not found: /data/koniq/512x384/1.jpg"``."""
    item: IQAItem | None = None
    """The item the row describes (its image is missing), so an evaluation can write an error row for it."""
    kind: str = "missing_image"
    """Status of that error row: ``missing_image``, or ``not_a_file`` (a folder, FIFO or device by that name)."""


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset: the items to assess and the problems met while reading its labels."""

    name: str
    """Name used in every output row and table."""
    items: tuple[IQAItem, ...]
    """Usable items, in label-file order."""
    problems: tuple[Problem, ...] = ()
    """Rows that could not be used (missing images); an evaluation writes one error row for each."""
    source: Path | None = None
    """The label file read (``None`` for unlabeled folders)."""
    note: str = ""
    """Scale and protocol notes, e.g. ``"MOS 1-5 (VisualQuality-R1 min-max normalised), higher = better"``."""

    @property
    def labeled(self) -> bool:
        """True when every item carries a MOS (metrics are computed only then)."""
        return bool(self.items) and all(item.mos is not None for item in self.items)


class LabelError(ValueError):
    """A malformed label file or row; the message names the file, the line and what is wrong."""

    def __init__(self, source: Path, line: int | None, message: str) -> None:
        where = f"{source}:{line}" if line is not None else str(source)
        super().__init__(f"{where}: {message}")
        self.source = source
        self.line = line
