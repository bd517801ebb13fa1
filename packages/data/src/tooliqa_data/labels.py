"""Low-level label readers shared by the dataset adapters: whitespace lists, CSV/TSV tables, MATLAB vectors.

Every reader reports a malformed row as a :class:`LabelError` naming the file and the 1-based line, so a typo in
row 7,412 of a label file is found in seconds rather than as a crash deep inside an evaluation.
"""

from __future__ import annotations

import csv
import math
import os
import posixpath
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tooliqa_data.items import LabelError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class LabelRow:
    """One row of a label file, before its image is resolved on disk."""

    image: str
    """Image name or path relative to an image folder of the dataset."""
    mos: float | None
    """Score as stored (direction fixed later by the adapter); ``None`` when the file has no score column."""
    line: int
    """1-based line (or entry) number in the label file."""
    ref: str | None = None
    """Reference image name for full-reference style lists (KADID, Deblur, ...), used for content splits."""


_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")  # ASCII digits only


def parse_score(source: Path, line: int, text: str, what: str = "MOS") -> float:
    """A finite decimal number, or a :class:`LabelError` naming the file and line.

    Stricter than ``float``, which reads ``0_5`` as 5.0 and accepts ``nan``, ``inf`` and full-width digits: only
    ``[+-]digits[.digits][e±digits]`` is a score. A leading U+2212 minus (``−3``, as typeset) is a minus, as in the
    agent's own answer parser."""
    cleaned = text.strip().replace("\u2212", "-", 1) if text.strip().startswith("\u2212") else text.strip()
    if re.fullmatch(r"[+-]?(?:nan|inf|infinity)", cleaned, re.IGNORECASE):
        raise LabelError(source, line, f"{what} {text!r} is not finite")
    if not _NUMBER.fullmatch(cleaned):
        raise LabelError(source, line, f"{what} {text!r} is not a number")
    value = float(cleaned)
    if not math.isfinite(value):
        raise LabelError(source, line, f"{what} {text!r} is not finite")
    return value


_NAME_MAX = 255
"""Longest file-name component most file systems store (bytes); a longer one cannot exist on disk."""


def normalize_image_name(source: Path, line: int, name: str, root: Path) -> str:
    """A label's image path as one canonical relative path (``images/./a.jpg`` and ``images//a.jpg`` are
    ``images/a.jpg``, so the duplicate check sees them), kept inside the dataset root: an absolute path outside it
    or a ``..`` that climbs out is a :class:`LabelError` naming the file and line. Spaces are kept as written."""
    text = name
    if posixpath.isabs(text):
        for base in (root, root.resolve()):
            if Path(text).is_relative_to(base):
                text = Path(text).relative_to(base).as_posix()
                break
        else:
            raise LabelError(
                source,
                line,
                f"image path {name!r} is absolute and outside the dataset root {root}; list it relative to the root",
            )
    parts: list[str] = []
    for part in text.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise LabelError(
                    source,
                    line,
                    f"image path {name!r} climbs out of the dataset root {root} (..); list it relative to the root",
                )
            parts.pop()
            continue
        parts.append(part)
    if not parts:
        raise LabelError(source, line, f"image path {name!r} names no file")
    return "/".join(parts)


def text_lines(source: Path) -> list[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers (UTF-8, BOM and CRLF tolerated)."""
    if not source.is_file():
        raise LabelError(source, None, "label file not found")
    try:
        text = source.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelError(source, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]


def read_whitespace(
    source: Path, *, image: int, mos: int | None, ref: int | None = None, layout: str
) -> list[LabelRow]:
    """Rows of a whitespace-separated list without header (VisualQuality-R1's ``*_test_all.txt`` style).

    ``image``/``mos``/``ref`` are column indices; ``layout`` (e.g. ``"ref dist mos"``) is quoted in errors.
    """
    needed = max(i for i in (image, mos, ref) if i is not None) + 1
    rows = []
    for line, text in text_lines(source):
        fields = text.split()
        if len(fields) < needed:
            raise LabelError(source, line, f"expected {needed} columns ({layout}), got {len(fields)}: {text!r}")
        score = parse_score(source, line, fields[mos]) if mos is not None else None
        rows.append(LabelRow(fields[image], score, line, fields[ref] if ref is not None else None))
    return rows


@dataclass(frozen=True)
class Table:
    """A CSV/TSV file with a header row; ``rows`` keep their 1-based line numbers."""

    source: Path
    header: tuple[str, ...]
    rows: tuple[tuple[int, tuple[str, ...]], ...]

    def find(self, *candidates: str) -> int | None:
        """Index of the first header cell equal (case-insensitively, trimmed) to one of ``candidates``."""
        folded = [cell.strip().lower() for cell in self.header]
        for name in candidates:
            if name.lower() in folded:
                return folded.index(name.lower())
        return None

    def column(self, *candidates: str) -> int:
        """Like :meth:`find` but a missing column is a :class:`LabelError` quoting the header."""
        index = self.find(*candidates)
        if index is None:
            raise LabelError(
                self.source, 1, f"no column named any of {list(candidates)}; header is {list(self.header)}"
            )
        return index

    def cell(self, line: int, fields: tuple[str, ...], index: int, strip: bool = True) -> str:
        """``fields[index]`` (stripped unless ``strip=False``), or a :class:`LabelError` when the row is too short."""
        if index >= len(fields):
            raise LabelError(self.source, line, f"row has {len(fields)} cells, column {self.header[index]!r} missing")
        return fields[index].strip() if strip else fields[index]


def read_table(source: Path) -> Table:
    """Read a CSV (or TSV: ``.tsv`` suffix or tabs in the header; or the first sheet of an ``.xlsx``) with a header."""
    if source.suffix.lower() == ".xlsx":
        return read_xlsx(source)
    lines = text_lines(source)
    if not lines:
        raise LabelError(source, None, "label file is empty")
    delimiter = "\t" if source.suffix.lower() == ".tsv" or "\t" in lines[0][1] else ","
    with source.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        records = []
        try:
            for fields in reader:
                if any(cell.strip() for cell in fields):
                    records.append((reader.line_num, tuple(fields)))
        except csv.Error as exc:
            raise LabelError(source, reader.line_num, f"malformed CSV: {exc}") from None
    header = tuple(cell.strip() for cell in records[0][1])
    return Table(source, header, tuple(records[1:]))


_XLSX = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"


def _column_index(reference: str) -> int:
    """``"C7"`` → 2 (0-based column of a cell reference)."""
    index = 0
    for char in reference:
        if not char.isalpha():
            break
        index = index * 26 + ord(char.upper()) - ord("A") + 1
    return index - 1


def read_xlsx(source: Path) -> Table:
    """The first worksheet of an ``.xlsx`` file as a :class:`Table` (row 1 = header), read with the standard library.

    Official label files ship as spreadsheets (SPAQ's ``MOS and Image attribute scores.xlsx``); reading the few XML
    parts needed keeps a spreadsheet dependency out of the package. Line numbers are spreadsheet row numbers.
    """
    import zipfile
    from xml.etree import ElementTree

    if not source.is_file():
        raise LabelError(source, None, "label file not found")
    try:
        with zipfile.ZipFile(source) as archive:
            names = set(archive.namelist())
            shared: list[str] = []
            if "xl/sharedStrings.xml" in names:
                root = ElementTree.fromstring(archive.read("xl/sharedStrings.xml"))
                shared = ["".join(t.text or "" for t in si.iter(f"{_XLSX}t")) for si in root.iter(f"{_XLSX}si")]
            sheets = sorted(n for n in names if n.startswith("xl/worksheets/sheet") and n.endswith(".xml"))
            if not sheets:
                raise LabelError(source, None, "no worksheet in this .xlsx file")
            sheet = ElementTree.fromstring(archive.read(sheets[0]))
    except (zipfile.BadZipFile, ElementTree.ParseError, KeyError) as exc:
        raise LabelError(source, None, f"not a readable .xlsx file ({exc})") from None
    records: list[tuple[int, tuple[str, ...]]] = []
    for row in sheet.iter(f"{_XLSX}row"):
        cells: dict[int, str] = {}
        for position, cell in enumerate(row.iter(f"{_XLSX}c")):
            kind, value = cell.get("t"), cell.find(f"{_XLSX}v")
            if kind == "inlineStr":
                text = "".join(t.text or "" for t in cell.iter(f"{_XLSX}t"))
            elif value is None or value.text is None:
                continue
            elif kind == "s":
                text = shared[int(value.text)]
            else:
                text = value.text
            cells[_column_index(cell.get("r", "")) if cell.get("r") else position] = text
        if cells and any(text.strip() for text in cells.values()):
            line = int(row.get("r", len(records) + 1))
            records.append((line, tuple(cells.get(i, "") for i in range(max(cells) + 1))))
    if not records:
        raise LabelError(source, None, "the first worksheet is empty")
    return Table(source, tuple(cell.strip() for cell in records[0][1]), tuple(records[1:]))


def table_rows(table: Table, *, image: int, mos: int | None, ref: int | None = None) -> list[LabelRow]:
    """:class:`LabelRow` s from the given column indices of a :class:`Table`."""
    rows = []
    for line, fields in table.rows:
        name = table.cell(line, fields, image, strip=False)  # a trailing space may be part of the file's name
        if not name.strip():
            raise LabelError(table.source, line, f"empty image name in column {table.header[image]!r}")
        score = parse_score(table.source, line, table.cell(line, fields, mos)) if mos is not None else None
        rows.append(LabelRow(name, score, line, table.cell(line, fields, ref) if ref is not None else None))
    return rows


def read_mat_vector(source: Path, variable: str) -> list[str | float]:
    """The entries of a MATLAB vector or cell array (e.g. LIVE Challenge's ``AllMOS_release``), flattened in order."""
    import numpy as np
    import scipy.io

    if not source.is_file():
        raise LabelError(source, None, "MATLAB file not found")
    try:
        contents = scipy.io.loadmat(source)
    except (ValueError, OSError, TypeError) as exc:
        raise LabelError(source, None, f"not a readable MATLAB file ({exc})") from None
    if variable not in contents:
        found = [key for key in contents if not key.startswith("__")]
        raise LabelError(source, None, f"no variable {variable!r}; found {found}")

    def unwrap(value: object) -> str | float:
        # Cell arrays load as nested object arrays of 1-element arrays; peel until a scalar or a string is left.
        while isinstance(value, np.ndarray):
            if value.dtype.kind == "U":
                return str(value.item() if value.size == 1 else "".join(value.ravel()))
            if value.size != 1:
                raise LabelError(source, None, f"{variable}: expected scalar entries, found shape {value.shape}")
            value = value.ravel()[0]
        return value if isinstance(value, str) else float(value)

    return [unwrap(entry) for entry in np.asarray(contents[variable], dtype=object).ravel()]


class ImageResolver:
    """Find an image named by a label row among candidate folders, falling back to a case-insensitive match.

    Case matters because label files and archives disagree (TID2013 lists ``i01_01_1.bmp``, some copies hold
    ``I01_01_1.BMP``); the fallback lists each folder once.
    """

    def __init__(self, root: Path, folders: Sequence[str]) -> None:
        self.folders = [root / folder if folder else root for folder in folders] or [root]
        self._listings: dict[Path, dict[str, str]] = {}

    def __call__(self, name: str) -> Path | None:
        names = [name] if name == name.strip() else [name, name.strip()]  # as written first, then trimmed
        for candidate in names:
            for folder in self.folders:
                path = folder / candidate
                if _is_file(path):
                    return path
        for candidate in names:
            for folder in self.folders:
                path = folder / candidate
                listing = self._listing(path.parent)
                actual = listing.get(path.name.lower())
                if actual is not None and _is_file(path.parent / actual):
                    return path.parent / actual
        return None

    def why(self, name: str) -> tuple[str, str]:
        """``(status, message)`` of a name :meth:`__call__` did not find: ``not_a_file`` for a folder, FIFO or device
        by that name, else ``missing_image`` (with the reason when the name cannot exist, e.g. too long)."""
        expected = self.expected(name)
        longest = max((len(part.encode()) for part in name.split("/")), default=0)
        if longest > _NAME_MAX:
            return (
                "missing_image",
                f"image name too long for the file system ({longest} bytes in one part, limit {_NAME_MAX}): {str(expected)[:120]}…",
            )
        for folder in self.folders:
            kind = _kind(folder / name)
            if kind is not None:
                return "not_a_file", f"not a regular file ({kind}): {folder / name}"
        shown = repr(name) if name != name.strip() else str(expected)
        return "missing_image", f"image not found: {shown}" + (
            f" under {self.folders[0]}" if shown != str(expected) else ""
        )

    def expected(self, name: str) -> Path:
        """Where the image was looked for first (quoted in 'image not found' problems)."""
        return self.folders[0] / name

    def _listing(self, folder: Path) -> dict[str, str]:
        if folder not in self._listings:
            try:
                names = os.listdir(folder)
            except OSError:  # absent, not a folder, unreadable or a name too long: nothing to match
                names = []
            self._listings[folder] = {name.lower(): name for name in names}
        return self._listings[folder]


def _is_file(path: Path) -> bool:
    """``Path.is_file`` without its OSError on a name the file system cannot hold (``ENAMETOOLONG``)."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def _kind(path: Path) -> str | None:
    """What stands at ``path`` when it is no regular file (``"a folder"``, ``"a FIFO"``, ...), None when nothing."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    for test, what in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):  # fmt: skip
        if test(mode):
            return what
    return None


def list_images(root: Path) -> list[Path]:
    """Every image file under ``root`` (recursive), sorted by relative path, for unlabeled folders."""
    return sorted(
        (path for path in root.rglob("*") if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda path: path.relative_to(root).as_posix(),
    )
