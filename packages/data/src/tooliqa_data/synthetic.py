"""A self-contained synthetic IQA set: procedural reference images with KADID-style distortions at 5 levels.

Used by the CPU training demo and by tests, so it needs no download and is small: references are 96-160 px, built
from gradients, value-noise textures, shapes and text-like strokes (so blur, noise and blocking all have edges and
fine detail to act on). Levels are strong on purpose — level 5 is unmistakable even at 96 px — so that a tiny model
can learn to rank them.

MOS mapping (documented, identical for every distortion type): ``MOS = 5 - 0.8 * level``, i.e. levels 1..5 →
4.2, 3.4, 2.6, 1.8, 1.0 (higher = better, KADID's 1-5 range); the optional pristine references are level 0, MOS 5. Everything is a function of ``seed``: the same call
writes byte-identical files.

Layout written under ``out_dir``: ``images/r003_blur_2.png`` (JPEG-compressed levels are real ``.jpg`` files) and
``manifest.csv`` with columns ``image,mos,reference,distortion,level`` — readable by ``load_dataset("csv", out_dir)``.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from tooliqa_data.atomic import replace_atomically
from tooliqa_data.items import IQAItem

LEVELS = 5


def level_mos(level: int) -> float:
    """MOS of a distortion level 1..5, or 0 for a pristine reference (``5 - 0.8 * level``)."""
    if not 0 <= level <= LEVELS:
        raise ValueError(f"level must be in 0..{LEVELS}, got {level}")
    return round(5.0 - 0.8 * level, 4)


# --- procedural references ---------------------------------------------------------------------------------------


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, size=3))


def _gradient(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Linear gradient between two random colours at a random angle, float [H, W, 3] in [0, 1]."""
    angle = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    t = (np.cos(angle) * x / width + np.sin(angle) * y / height + 1) / 2
    a, b = rng.uniform(0, 1, size=(2, 3))
    return a * (1 - t[..., None]) + b * t[..., None]


def _value_noise(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Multi-octave value noise (random grids upsampled), float [H, W] in [0, 1]: a natural-looking texture."""
    total = np.zeros((height, width))
    for octave, weight in ((4, 0.5), (8, 0.3), (24, 0.2)):
        grid = Image.fromarray((rng.uniform(0, 255, size=(octave, octave))).astype(np.uint8), "L")
        total += weight * np.asarray(grid.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float64) / 255
    return np.clip(total, 0, 1)


def _stripes(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Oriented sinusoid gratings (fine periodic detail that blur visibly erases), float [H, W] in [0, 1]."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    total = np.zeros((height, width))
    for _ in range(2):
        angle, period = rng.uniform(0, np.pi), rng.uniform(3.0, 9.0)
        total += np.sin(2 * np.pi * (np.cos(angle) * x + np.sin(angle) * y) / period)
    return (total / 4) + 0.5


def make_reference(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """One procedural reference: gradient + texture patch + shapes + text-like strokes."""
    base = _gradient(rng, width, height)
    texture = _value_noise(rng, width, height) if rng.uniform() < 0.5 else _stripes(rng, width, height)
    mask = np.zeros((height, width))
    x0, y0 = rng.integers(0, width // 2), rng.integers(0, height // 2)
    mask[y0 : y0 + height // 2, x0 : x0 + width // 2] = 1.0
    tint = rng.uniform(0.2, 1.0, size=3)
    base = base * (1 - 0.8 * mask[..., None]) + 0.8 * mask[..., None] * texture[..., None] * tint
    image = Image.fromarray(np.clip(base * 255, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 7))):
        x1, y1 = rng.integers(0, width), rng.integers(0, height)
        box = [x1, y1, x1 + int(rng.integers(10, width // 2)), y1 + int(rng.integers(10, height // 2))]
        shape = rng.integers(0, 3)
        outline = _colour(rng) if rng.uniform() < 0.6 else None
        if shape == 0:
            draw.ellipse(box, fill=_colour(rng), outline=outline, width=2)
        elif shape == 1:
            draw.rectangle(box, fill=_colour(rng), outline=outline, width=2)
        else:
            points = [(int(rng.integers(0, width)), int(rng.integers(0, height))) for _ in range(3)]
            draw.polygon(points, fill=_colour(rng), outline=outline)
    # Text-like strokes: rows of short jagged polylines, dark on a light band, like handwriting seen from afar.
    for _ in range(int(rng.integers(1, 3))):
        top = int(rng.integers(4, height - 16))
        draw.rectangle([0, top - 3, width, top + 12], fill=(235, 235, 225))
        ink = tuple(int(c) for c in rng.integers(0, 70, size=3))
        x = 3
        while x < width - 8:
            glyph = [(x + int(rng.integers(0, 6)), top + int(rng.integers(0, 10))) for _ in range(3)]
            draw.line(glyph, fill=ink, width=1)
            x += int(rng.integers(6, 10))
    return image


# --- distortions --------------------------------------------------------------------------------------------------


def _array(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64) / 255.0


def _image(values: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8), "RGB")


def _blur(image: Image.Image, level: int, rng: np.random.Generator) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur((0.8, 1.5, 2.4, 3.6, 5.5)[level - 1]))


def _motion_blur(image: Image.Image, level: int, rng: np.random.Generator) -> Image.Image:
    import scipy.ndimage

    length = (3, 5, 9, 13, 19)[level - 1]
    kernel = np.zeros((length, length))
    kernel[length // 2, :] = 1.0
    kernel = scipy.ndimage.rotate(kernel, rng.uniform(0, 180), reshape=False, order=1)
    kernel /= kernel.sum()
    values = _array(image)
    return _image(np.stack([scipy.ndimage.convolve(values[..., c], kernel, mode="reflect") for c in range(3)], -1))


def _noise(image: Image.Image, level: int, rng: np.random.Generator) -> Image.Image:
    sigma = (0.04, 0.08, 0.13, 0.19, 0.28)[level - 1]
    values = _array(image)
    return _image(values + rng.normal(0, sigma, size=values.shape))


def _impulse_noise(image: Image.Image, level: int, rng: np.random.Generator) -> Image.Image:
    prob = (0.02, 0.05, 0.10, 0.18, 0.30)[level - 1]
    values = _array(image).copy()
    hits = rng.uniform(size=values.shape[:2]) < prob
    values[hits] = rng.integers(0, 2, size=(int(hits.sum()), 1)).astype(np.float64)
    return _image(values)


def _contrast(image: Image.Image, level: int, rng: np.random.Generator) -> Image.Image:
    factor = (0.65, 0.45, 0.3, 0.18, 0.08)[level - 1]
    values = _array(image)
    return _image(values.mean() + (values - values.mean()) * factor)


def _darken(image: Image.Image, level: int, rng: np.random.Generator) -> Image.Image:
    return _image(_array(image) ** (1.6, 2.2, 3.0, 4.2, 6.0)[level - 1])


def _brighten(image: Image.Image, level: int, rng: np.random.Generator) -> Image.Image:
    return _image(_array(image) ** (1.0 / (1.6, 2.2, 3.0, 4.2, 6.0)[level - 1]))


def _pixelate(image: Image.Image, level: int, rng: np.random.Generator) -> Image.Image:
    factor = (2, 4, 8, 16, 32)[level - 1]  # nested block grids: each level merges the previous level's blocks
    small = image.resize((max(1, image.width // factor), max(1, image.height // factor)), Image.Resampling.BOX)
    return small.resize(image.size, Image.Resampling.NEAREST)


def _quantize(image: Image.Image, level: int, rng: np.random.Generator) -> Image.Image:
    steps = (12, 7, 5, 3, 2)[level - 1]
    return _image(np.round(_array(image) * (steps - 1)) / (steps - 1))


def _identity(image: Image.Image, level: int, rng: np.random.Generator) -> Image.Image:
    return image


@dataclass(frozen=True)
class Distortion:
    """One distortion type: how it changes an image at level 1..5."""

    apply: Callable[[Image.Image, int, np.random.Generator], Image.Image]
    """``(reference, level, rng) -> distorted``; ``rng`` is seeded per (seed, reference, type), same for all levels."""
    jpeg_quality: tuple[int, ...] | None = None
    """Compression types only: the file is written as a JPEG at this quality per level (the file is the distortion)."""


DISTORTIONS: dict[str, Distortion] = {
    "blur": Distortion(_blur),
    "motion_blur": Distortion(_motion_blur),
    "noise": Distortion(_noise),
    "impulse_noise": Distortion(_impulse_noise),
    "jpeg": Distortion(_identity, jpeg_quality=(35, 18, 10, 6, 3)),
    "contrast": Distortion(_contrast),
    "darken": Distortion(_darken),
    "brighten": Distortion(_brighten),
    "pixelate": Distortion(_pixelate),
    "quantize": Distortion(_quantize),
}


def make_synthetic_set(
    out_dir: str | Path,
    n_references: int = 8,
    seed: int = 0,
    *,
    size: int | Sequence[int] = (96, 128, 160),
    distortions: Sequence[str] | None = None,
    references: bool = False,
    name: str = "synthetic",
) -> list[IQAItem]:
    """Write the synthetic set under ``out_dir`` and return its items (in manifest order).

    Args:
        out_dir: folder to write ``images/`` and ``manifest.csv`` into (created; files of the same names overwritten).
        n_references: number of procedural references; the set has ``n_references * len(distortions) * 5`` images.
        seed: everything (content, sizes, noise) derives from it.
        size: side length, or sides each reference draws its width and height from (multiples of 32 suit the
            agent's 32-pixel grid).
        distortions: names from :data:`DISTORTIONS` (default: all of them).
        references: also write each pristine reference (``r000_reference_0.png``, level 0, MOS 5.0).
        name: dataset name of the returned items.
    """
    names = list(DISTORTIONS) if distortions is None else list(distortions)
    unknown = [d for d in names if d not in DISTORTIONS]
    if unknown:
        raise KeyError(f"unknown distortions {unknown}; known: {list(DISTORTIONS)}")
    if n_references < 1:
        raise ValueError(f"n_references must be ≥ 1, got {n_references}")
    sides = (size,) if isinstance(size, int) else tuple(size)
    if min(sides) < 32:
        raise ValueError(f"sizes must be ≥ 32 px (load_image rejects smaller), got {sides}")
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    items, rows = [], []
    for ref in range(n_references):
        rng = np.random.default_rng([seed, ref])
        width, height = (int(s) for s in rng.choice(sides, size=2))
        reference = make_reference(rng, width, height)
        if references:
            relative = f"images/r{ref:03d}_reference_0.png"
            save_atomically(reference, out_dir / relative, format="PNG")
            rows.append((relative, level_mos(0), f"r{ref:03d}", "reference", 0))
            items.append(IQAItem(out_dir / relative, level_mos(0), name))
        for d_index, d_name in enumerate(names):
            distortion = DISTORTIONS[d_name]
            for level in range(1, LEVELS + 1):
                # One generator seed for all levels of a (reference, type): the same noise pattern and blur direction
                # at growing strength, so a level differs from the next only in severity.
                image = distortion.apply(reference, level, np.random.default_rng([seed, ref, d_index]))
                relative = f"images/r{ref:03d}_{d_name}_{level}"
                if distortion.jpeg_quality is not None:
                    relative += ".jpg"
                    quality = distortion.jpeg_quality[level - 1]
                    save_atomically(image, out_dir / relative, format="JPEG", quality=quality)
                else:
                    relative += ".png"
                    save_atomically(image, out_dir / relative, format="PNG")
                mos = level_mos(level)
                rows.append((relative, mos, f"r{ref:03d}", d_name, level))
                items.append(IQAItem(out_dir / relative, mos, name))
    write_manifest(out_dir / "manifest.csv", ["image", "mos", "reference", "distortion", "level"], rows)
    return items


def save_atomically(image: Image.Image, path: Path, **options) -> None:
    """Save ``image`` whole (:func:`~tooliqa_data.atomic.replace_atomically`): two runs writing the same set at once
    (ablations started side by side) never let a reader see half a file; their bytes are the same."""
    replace_atomically(path, lambda handle: image.save(handle, **options), binary=True)


def write_manifest(path: Path, header: list[str], rows: list[tuple]) -> None:
    """The manifest CSV, whole like :func:`save_atomically`."""

    def write(handle) -> None:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)

    replace_atomically(path, write)
