"""Generated inputs of the reliability corpus (every file is made here: nothing is downloaded)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image


def smooth_set(folder: Path, n: int, seed: int = 0) -> Path:
    """``n`` small images of increasing blur with a ``labels.csv`` (image,mos): real, varied scores."""
    from PIL import ImageFilter

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), "RGB")
    rows = []
    for i in range(n):
        name = f"img_{i:03d}.png"
        base.filter(ImageFilter.GaussianBlur(radius=0.3 * (i % 9))).save(folder / name)
        rows.append((name, 5.0 - 0.4 * (i % 9) + 0.01 * i))
    with (folder / "labels.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([("image", "mos"), *rows])
    return folder


def sharpness(image) -> float:
    gray = image.float().mean(0)
    lap = 4 * gray[1:-1, 1:-1] - gray[:-2, 1:-1] - gray[2:, 1:-1] - gray[1:-1, :-2] - gray[1:-1, 2:]
    return float(lap.abs().mean())


def comparable(rows: list[dict]) -> list[dict]:
    """predictions.csv rows without the wall-clock column (the only one a rerun may change)."""
    return sorted(({k: v for k, v in row.items() if k != "seconds"} for row in rows), key=lambda r: r["image"])


def read_rows(out: Path) -> list[dict]:
    with (out / "predictions.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
