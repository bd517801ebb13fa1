"""Dataset adapters: a registry from dataset name to how its label files read and where its images live.

``load_dataset("koniq", "/data/koniq10k")`` finds the label file among the adapter's known names, reads it (official
files and VisualQuality-R1's lists both work), resolves every image under the root and returns a :class:`Dataset`.
Higher MOS = better for every adapter; no built-in set stores a lower-is-better DMOS (KADID's ``dmos`` column is a
MOS), and generic manifests flip one with ``lower_better=True``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from tooliqa_data.items import Dataset, IQAItem, LabelError, Problem
from tooliqa_data.labels import (
    ImageResolver,
    LabelRow,
    list_images,
    normalize_image_name,
    parse_score,
    read_mat_vector,
    read_table,
    read_whitespace,
    table_rows,
    text_lines,
)

# KADID-10K's reference-disjoint split, as committed by VisualQuality-R1 (datasets/KADID-10K/KADID-10K_*_set.txt):
# 49 / 16 / 16 references x 125 distorted images = 6,125 / 2,000 / 2,000. Kept here so the official dmos.csv splits
# the same way without the list files.
_KADID_VAL = frozenset(f"I{i:02d}" for i in (7, 12, 14, 15, 16, 27, 32, 35, 36, 41, 44, 49, 55, 66, 67, 70))
_KADID_TEST = frozenset(f"I{i:02d}" for i in (19, 29, 30, 34, 37, 38, 43, 50, 64, 71, 72, 73, 74, 78, 80, 81))
KADID_SPLITS: dict[str, frozenset[str]] = {
    "train": frozenset(f"I{i:02d}" for i in range(1, 82)) - _KADID_VAL - _KADID_TEST,
    "val": _KADID_VAL,
    "test": _KADID_TEST,
}
_KONIQ_SETS = {"train": "training", "val": "validation", "test": "test"}
_CLIVE_TRAINING = re.compile(r"^t\d+\.bmp$", re.IGNORECASE)


@dataclass(frozen=True)
class AdapterOptions:
    """Per-dataset reading options (``load_dataset(..., **options)``); adapters ignore the ones that do not apply."""

    split: str | None = None
    """Subset to keep: KADID-10K ``train``/``val``/``test`` (reference-disjoint), KonIQ-10k ``train``/``val``/``test``
    (the ``set`` column of ``koniq10k_distributions_sets.csv``). ``None`` = every row."""
    include_training: bool = True
    """LIVE Challenge: keep the 7 training images t1-t7 (VisualQuality-R1 keeps them: 1,169 images; the standard
    protocol of pyiqa drops them: 1,162)."""
    mos_column: str | None = None
    """CSV labels: read the score from this column instead of the adapter's default (e.g. KonIQ ``MOS_zscore``)."""
    image_dir: str | None = None
    """Image folder relative to the root (or absolute); default: the adapter's usual folders, first match wins."""
    lower_better: bool = False
    """Generic manifests: the score is a DMOS (lower = better); it is flipped to ``min + max - x``."""
    check_images: bool = True
    """Look every image up on disk; a missing one becomes a :class:`Problem`. False trusts the labels (no disk I/O)."""


Reader = Callable[[Path, AdapterOptions], list[LabelRow]]


@dataclass(frozen=True)
class Adapter:
    """How one dataset's labels read and where its images live."""

    title: str
    """Display name, used as the dataset name in outputs (Table 1 names where the paper has them)."""
    labels: tuple[str, ...]
    """Label files tried under the root when none is given, first existing wins (empty: unlabeled folder)."""
    folders: tuple[str, ...]
    """Image folders tried under the root for every row, first match wins (``""`` = the root itself)."""
    read: Reader
    """Reads the label file into rows."""
    scale: str
    """Native score scale and direction, written into the dataset note."""
    splits: tuple[str, ...] = ()
    """Values accepted for ``split``."""


def _first_line(source: Path) -> str:
    lines = text_lines(source)
    if not lines:
        raise LabelError(source, None, "label file is empty")
    return lines[0][1]


def _is_table(source: Path) -> bool:
    return source.suffix.lower() in (".csv", ".tsv", ".xlsx")


def _nr_list(image_cols: tuple[str, ...], mos_cols: tuple[str, ...]) -> Reader:
    """No-reference sets: a CSV with the given columns, or a whitespace list ``image mos [std]``."""

    def read(source: Path, options: AdapterOptions) -> list[LabelRow]:
        if not _is_table(source):
            return read_whitespace(source, image=0, mos=1, layout="image mos [std]")
        table = read_table(source)
        mos = table.column(options.mos_column) if options.mos_column else table.column(*mos_cols)
        return table_rows(table, image=table.column(*image_cols), mos=mos)

    return read


def _pair_list(source: Path, options: AdapterOptions) -> list[LabelRow]:
    """Algorithm-oriented sets (Deblur, SRIQA-Bench, Dehaze): ``ref dist mos``; the distorted image is assessed."""
    if _is_table(source):
        return _read_manifest(source, options)
    return read_whitespace(source, image=1, mos=2, ref=0, layout="ref dist mos")


def _read_kadid(source: Path, options: AdapterOptions) -> list[LabelRow]:
    if _first_line(source).lower().startswith("dist_img"):  # official dmos.csv: dist_img,ref_img,dmos,var
        table = read_table(source)
        rows = table_rows(table, image=table.column("dist_img"), mos=table.column("dmos"), ref=table.column("ref_img"))
    else:  # VisualQuality-R1 lists: ref dist mos std
        rows = read_whitespace(source, image=1, mos=2, ref=0, layout="ref dist mos std")
    if options.split is None:
        return rows
    refs = KADID_SPLITS[options.split]
    return [row for row in rows if Path(row.ref or row.image[:3]).stem.upper() in refs]


def _read_koniq(source: Path, options: AdapterOptions) -> list[LabelRow]:
    if not _is_table(source):
        if options.split is not None:
            raise LabelError(source, None, "split needs koniq10k_distributions_sets.csv (a 'set' column)")
        return read_whitespace(source, image=0, mos=1, layout="image mos std")
    table = read_table(source)
    mos = table.column(options.mos_column or "MOS")
    rows = table_rows(table, image=table.column("image_name"), mos=mos)
    if options.split is None:
        return rows
    index = table.column("set")
    wanted = {line for line, fields in table.rows if table.cell(line, fields, index) == _KONIQ_SETS[options.split]}
    return [row for row in rows if row.line in wanted]


def _read_clive(source: Path, options: AdapterOptions) -> list[LabelRow]:
    if source.suffix.lower() == ".mat":  # official Data/AllMOS_release.mat + AllImages_release.mat beside it
        folder = source.parent
        names = read_mat_vector(folder / "AllImages_release.mat", "AllImages_release")
        scores = read_mat_vector(folder / "AllMOS_release.mat", "AllMOS_release")
        if len(names) != len(scores):
            raise LabelError(folder / "AllMOS_release.mat", None, f"{len(scores)} scores for {len(names)} images")
        rows = []
        for entry, (name, score) in enumerate(zip(names, scores), start=1):
            if not isinstance(name, str) or isinstance(score, str):
                raise LabelError(folder / "AllImages_release.mat", entry, f"entry {entry} is {name!r}, {score!r}")
            rows.append(LabelRow(name, score, entry))
    else:
        rows = read_whitespace(source, image=0, mos=1, layout="image mos std")
    if options.include_training:
        return rows
    return [row for row in rows if not _CLIVE_TRAINING.match(Path(row.image).name)]


def _read_tid(source: Path, options: AdapterOptions) -> list[LabelRow]:
    return read_whitespace(source, image=1, mos=0, layout="mos name")


def _read_pipal(source: Path, options: AdapterOptions) -> list[LabelRow]:
    """PIPAL ``Train_Label/*.txt`` (a folder of them or one file): lines ``A0001_00_00.bmp,1520.0648`` (ELO)."""
    files = sorted(source.glob("*.txt")) if source.is_dir() else [source]
    if not files:
        raise LabelError(source, None, "no *.txt label files in this folder")
    rows = []
    for path in files:
        for line, text in text_lines(path):
            name, comma, score = text.partition(",")
            if not comma:
                raise LabelError(path, line, f"expected 'name,elo', got {text!r}")
            rows.append(LabelRow(name.strip(), parse_score(path, line, score.strip()), line))
    return rows


def _read_livefb(source: Path, options: AdapterOptions) -> list[LabelRow]:
    """``labels_image.csv`` (``name,mos``) or the test list ``labels640.csv`` (``name_image``, ``mos_image``)."""
    table = read_table(source)
    if table.find("name_image") is not None:
        return table_rows(table, image=table.column("name_image"), mos=table.column("mos_image"))
    return table_rows(table, image=table.column("name", "name_image"), mos=table.column(options.mos_column or "mos"))


_MANIFEST_IMAGE = ("image", "img", "path", "image_path", "img_path", "filename", "file", "name", "image_name")
_MANIFEST_MOS = ("mos", "score", "dmos", "label", "quality")


def _read_manifest(source: Path, options: AdapterOptions) -> list[LabelRow]:
    """Generic CSV/TSV with a header: an image column and, optionally, a score column (none: unlabeled)."""
    table = read_table(source)
    mos = table.column(options.mos_column) if options.mos_column else table.find(*_MANIFEST_MOS)
    return table_rows(table, image=table.column(*_MANIFEST_IMAGE), mos=mos)


def _read_folder(source: Path, options: AdapterOptions) -> list[LabelRow]:
    """Unlabeled folder: every image under it, sorted, numbered in listing order."""
    return [
        LabelRow(path.relative_to(source).as_posix(), None, i) for i, path in enumerate(list_images(source), start=1)
    ]


DATASETS: dict[str, Adapter] = {
    "kadid10k": Adapter(
        "KADID-10K",
        ("dmos.csv", "KADID-10K_mos.txt"),
        ("images", ""),
        _read_kadid,
        "MOS 1-5 (the official 'dmos' column is a MOS), higher = better",
        ("train", "val", "test"),
    ),
    "koniq10k": Adapter(
        "KonIQ",
        ("koniq10k_scores_and_distributions.csv", "koniq10k_distributions_sets.csv", "KONIQ-10K_test_all.txt"),
        ("512x384", "1024x768", ""),
        _read_koniq,
        "official MOS 1-5 (or MOS_zscore 0-100 via mos_column); VisualQuality-R1 list 1-5; higher = better",
        ("train", "val", "test"),
    ),
    "spaq": Adapter(
        "SPAQ",
        (
            "Annotations/MOS and Image attribute scores.xlsx",
            "MOS and Image attribute scores.xlsx",
            "MOS and Image attribute scores.csv",
            "SPAQ_test_all.txt",
        ),
        ("TestImage", "images", ""),
        _nr_list(("Image name", "image_name", "image"), ("MOS", "mos")),
        "MOS 0-100 (list: 1-5), higher = better",
    ),
    "livec": Adapter(
        "CLIVE",
        ("Data/AllMOS_release.mat", "LIVEC_test_all.txt"),
        ("Images", "Images/trainingImages", ""),
        _read_clive,
        "MOS 0-100, higher = better",
    ),
    "bid": Adapter(
        "BID",
        ("BID_test_all.txt", "DatabaseGrades.csv"),
        ("", "ImageDatabase"),
        _nr_list(("image", "name", "image_name"), ("mos", "score", "grade")),
        "MOS 0-5 (list: 0-100), higher = better",
    ),
    "tid2013": Adapter(
        "TID2013", ("mos_with_names.txt",), ("distorted_images", ""), _read_tid, "MOS 0-9, higher = better"
    ),
    "livefb": Adapter(
        "LIVE-FB",
        ("labels_image.csv", "database/labels_image.csv"),
        ("database", ""),
        _read_livefb,
        "MOS 0-100, higher = better",
    ),
    "pipal": Adapter(
        "PIPAL",
        ("Train_Label",),
        ("Train_Dist", "Dist_Imgs", ""),
        _read_pipal,
        "ELO (about 1000-1800), higher = better",
    ),
    "dehaze": Adapter("Dehaze", ("dehaze_test_all.txt",), ("", "images"), _pair_list, "MOS 1-5, higher = better"),
    "sriqa": Adapter("SRIQA", ("SRIQA-Bench_test_all.txt",), ("", "images"), _pair_list, "MOS 0-100, higher = better"),
    "deblur": Adapter("Deblur", ("Deblur_test_all.txt",), ("", "images"), _pair_list, "MOS 1-5, higher = better"),
    "agiqa3k": Adapter(
        "AGIQA-3K",
        ("data.csv", "AGIQA-3K_test_all.txt"),
        ("", "AGIQA-3K", "images"),
        _nr_list(("name",), ("mos_quality", "mos")),
        "mos_quality 0-5 (list: 0-100), higher = better",
    ),
    "biq2021": Adapter(
        "BIQ2021",
        ("test.csv", "Test (Images and MOS).csv"),
        ("", "Images", "images"),
        _nr_list(("image", "Image Name"), ("mos",)),
        "MOS 0-1, higher = better",
    ),
    "csv": Adapter(
        "manifest",
        ("manifest.csv", "manifest.tsv", "labels.csv"),
        ("",),
        _read_manifest,
        "as given (lower_better=True flips a DMOS)",
    ),
    "folder": Adapter("folder", (), ("",), _read_folder, "unlabeled"),
}
_ALIASES = {
    "kadid": "kadid10k", "koniq": "koniq10k", "clive": "livec", "livechallenge": "livec", "liveitw": "livec",
    "tid": "tid2013", "flive": "livefb", "paq2piq": "livefb", "shrq": "dehaze", "sriqabench": "sriqa",
    "agiqa": "agiqa3k", "biq": "biq2021", "tsv": "csv", "manifest": "csv",
}  # fmt: skip


def canonical_name(name: str) -> str:
    """Registry key for a dataset name: case, ``-`` and ``_`` are ignored, aliases resolved (``"CLIVE"`` → ``livec``)."""
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(DATASETS)} (aliases: {sorted(_ALIASES)})")
    return key


def _find_labels(root: Path, labels: str | Path | None, adapter: Adapter, key: str) -> Path:
    if not adapter.labels:  # unlabeled folder: the "label source" is the folder itself
        return root
    if labels is not None:
        path = Path(labels)
        return path if path.is_absolute() or path.exists() else root / path
    for candidate in adapter.labels:
        if (root / candidate).exists():
            return root / candidate
    raise LabelError(root, None, f"no {key} label file found; tried {list(adapter.labels)}; pass labels=PATH")


def load_dataset(
    name: str,
    root: str | Path,
    labels: str | Path | None = None,
    split: str | None = None,
    *,
    dataset_name: str | None = None,
    **options: object,
) -> Dataset:
    """Read a dataset through its adapter.

    Args:
        name: registry key or alias (``kadid10k``, ``koniq``, ``clive``, ``csv``, ``folder``, ...).
        root: dataset folder; images are resolved under it, and label files default to the adapter's usual names.
        labels: label file (relative paths are tried as given, then under ``root``); default: found under ``root``.
        split: subset for adapters that have splits (see :class:`AdapterOptions`).
        dataset_name: name in the outputs (default: the adapter's title, e.g. ``"CLIVE"``).
        **options: further :class:`AdapterOptions` fields (``include_training``, ``mos_column``, ...).

    Raises:
        KeyError: unknown dataset name. ValueError: unknown split. LabelError: a malformed label file, naming the
        file and line, or duplicate images.
    """
    key = canonical_name(name)
    adapter = DATASETS[key]
    opts = AdapterOptions(split=split, **options)  # an unknown option is a TypeError naming it
    if split is not None and split not in adapter.splits:
        raise ValueError(f"{adapter.title} has no split {split!r}; known: {list(adapter.splits) or 'none'}")
    root = Path(root)
    title = dataset_name or (adapter.title if key not in ("csv", "folder") else root.name)
    source = _find_labels(root, labels, adapter, key)
    rows = adapter.read(source, opts)
    if not rows:
        raise LabelError(
            source,
            None,
            "no images" if key == "folder" else "no label rows" + (f" in split {split!r}" if split else ""),
        )
    if opts.lower_better:
        scores = [row.mos for row in rows if row.mos is not None]
        rows = [replace(row, mos=None if row.mos is None else min(scores) + max(scores) - row.mos) for row in rows]
    # one spelling per file (images/./a.jpg = images//a.jpg = images/a.jpg), never outside the root
    rows = [replace(row, image=normalize_image_name(source, row.line, row.image, root)) for row in rows]
    seen: dict[str, int] = {}
    for row in rows:
        if row.image in seen:
            raise LabelError(source, row.line, f"image {row.image!r} already listed on line {seen[row.image]}")
        seen[row.image] = row.line
    folders = (opts.image_dir,) if opts.image_dir else adapter.folders
    resolver = ImageResolver(root, folders)
    items, problems = [], []
    for row in rows:
        path = resolver(row.image) if opts.check_images else None
        item = IQAItem(path or resolver.expected(row.image), row.mos, title, row.image)
        if opts.check_images and path is None:
            kind, message = resolver.why(row.image)
            problems.append(Problem(source, row.line, message, item, kind))
        else:
            items.append(item)
    note = adapter.scale + (f"; split {split}" if split else "") + ("; DMOS flipped" if opts.lower_better else "")
    return Dataset(title, tuple(items), tuple(problems), source, note)
