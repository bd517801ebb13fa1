"""The "hidden evidence" set: synthetic IQA images in which each tool has a real job (the CPU demo of Tool-IQA).

Every image's MOS comes from its distortion level alone (:func:`tooliqa_data.synthetic.level_mos`: levels 1..5 →
4.2 .. 1.0), but where the evidence of that level sits differs by subset:

- ``plain``: the distortion is visible in the model's global view (the original is already at the view's size):
  a loss of fine texture (``detail_a``, ``detail_b``: two references, each with a 3-pixel checker texture whose
  amplitude falls with the level, as over-smoothing erases texture). A tool adds nothing.
- ``exposure_hidden`` (``dark_detail``): the same texture loss in a badly under-exposed 16-bit file (a camera's shadow
  detail): the reference's silhouette on 8-bit levels 1 and 2 with the checker below one 8-bit step, so the model's
  8-bit global view is byte-identical for all five levels, and only the Gamma Corrector's ``brighten`` (I^0.5 on all
  16 bits, ``load_image(keep_depth=True)``) shows the level — no readout of the original view can learn it, however
  long it trains. (``exposure_bits=8``, the earlier design: the distorted image times ``dark_gain`` in an 8-bit file,
  whose squeezed texture a readout trained long enough still reads — 0.82 against 0.79 brightened after 10 warm-start
  passes, BENCHMARKS.md.)
- ``scale_hidden`` (``fine_detail``): the same texture loss on an original ``scale`` times the view's side. Pre-sizing
  the global view (antialiased, ``scale``× down) averages the 3-pixel texture away (2 % of its amplitude is left at
  4× down); a Magnifier crop of any box up to half the image's side is shown at ≤ 2× down, where 61–100 % is left,
  so the box need not be precise.

Per reference: 5 levels of each of the four, so half of the images hide their evidence (the paper's target tool
rate ρ̂ = 0.5 is also the useful rate). Every subset's distortion is the same texture loss, seen directly, through
the Gamma Corrector or through the Magnifier: all read on one quality scale, which the demo's single held-out SRCC
needs. (With a contrast loss in the plain half, a linear readout of each subset's right view reached 0.48 on one
scale; ``benchmarks/demo_probe.py --set context``. With a contrast loss under the darkness, one score readout
trained on all subsets at once read the brightened exposure-hidden views backwards — held-out SRCC −0.35 on that
subset, against 0.61 with the texture loss; ``benchmarks/demo_warm_probe.py``.) Random features see the texture
amplitude as a systematic shift of the patch embeddings (a fixed-phase checker), unlike zero-mean pixel noise, which
a frozen random vision tower averages out (``benchmarks/demo_probe.py --set hidden`` measured both). Everything is a
function of ``seed``: the same call writes byte-identical files. Held-out splits use another seed, so other references.

Layout under ``out_dir``: ``images/r003_scale_hidden_2.png`` … and ``manifest.csv`` with columns
``image,mos,reference,distortion,level,subset`` (readable by ``load_dataset("csv", out_dir)``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tooliqa_data.items import IQAItem
from tooliqa_data.synthetic import LEVELS, level_mos, make_reference, save_atomically, write_manifest

SUBSETS: tuple[str, ...] = ("plain", "exposure_hidden", "scale_hidden")
"""The subsets, in manifest order."""

_TEXTURE = (0.24, 0.17, 0.11, 0.06, 0.02)
"""Amplitude of the ±1 checker texture per level, on [0, 1] pixels (more distortion: less fine detail left)."""
_CELL = 3
"""Checker cell side in original pixels: fine enough to vanish at 4× down, coarse enough to survive 2× down."""


@dataclass(frozen=True)
class HiddenEvidenceConfig:
    """How the hidden-evidence set is drawn."""

    view_side: int = 128
    """Side of the model's global view (the demo kit's 128 × 128 pixel budget: 16 visual tokens, so the image is not
    drowned by the protocol's text): plain and exposure-hidden originals have this size."""
    scale: int = 4
    """Scale-hidden originals are ``scale × view_side`` on a side; the global view is ``scale``× smaller."""
    dark_gain: float = 0.06
    """Exposure-hidden images are the distorted image times this (0.06: everything below 16 of 255). Measured on the
    demo kit (a score readout trained on all subsets' views at once, ``benchmarks/demo_warm_probe.py``,
    held-out SRCC on this subset, original view → brightened view): 0.2 leaves the level readable in the original
    (0.86 → 0.94), 0.1 half hides it (0.36 → 0.76), 0.08: 0.29 → 0.73, 0.06: 0.10 → 0.61. Used when
    ``exposure_bits`` is 8."""
    exposure_bits: int = 16
    """Bit depth of the exposure-hidden files. 8: the distorted image times ``dark_gain``, an 8-bit PNG (the texture
    is squeezed into a few grey values, which a readout trained long enough still reads). 16: a 16-bit grayscale PNG
    whose texture lies below one 8-bit step, on a base of 8-bit levels 1 and 2 (the reference's silhouette): the 8-bit
    rendering — the model's global view — is byte-identical for all five levels, and only the Gamma Corrector, which
    brightens all 16 bits (``load_image(keep_depth=True)``), shows the level."""

    def __post_init__(self) -> None:
        if self.view_side < 32 or self.view_side % 32:
            raise ValueError(f"HiddenEvidenceConfig.view_side must be a multiple of 32, ≥ 32, got {self.view_side}")
        if self.scale < 2:
            raise ValueError(f"HiddenEvidenceConfig.scale must be ≥ 2 (else nothing is hidden), got {self.scale}")
        if not 0 < self.dark_gain < 0.5:
            raise ValueError(f"HiddenEvidenceConfig.dark_gain must be in (0, 0.5), got {self.dark_gain}")
        if self.exposure_bits not in (8, 16):
            raise ValueError(f"HiddenEvidenceConfig.exposure_bits must be 8 or 16, got {self.exposure_bits}")


def _array(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64) / 255.0


def _image(values: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8), "RGB")


def _checker(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A ±1 checker of ``_CELL``-pixel cells at a random phase, ``[H, W, 1]``."""
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    offset = rng.integers(0, _CELL, size=2)
    return np.where(((y + offset[0]) // _CELL + (x + offset[1]) // _CELL) % 2 == 0, 1.0, -1.0)[..., None]


def _textured(values: np.ndarray, rng: np.random.Generator):
    """``level → image``: the reference compressed to mid-grey plus a checker texture of the level's amplitude."""
    checker = _checker(values.shape[:2], rng)
    base = 0.25 + 0.5 * values  # headroom for the texture: nothing clips, so the level is the amplitude alone
    return lambda level: _image(base + _TEXTURE[level - 1] * checker)


_SUB_STEP = 0.45
"""16-bit exposure-hidden: the level-1 texture amplitude in 8-bit steps (< 0.5, so rounding to 8 bits erases it)."""


def _deep_dark(values: np.ndarray, rng: np.random.Generator):
    """``level → 16-bit image``: the reference's silhouette on 8-bit levels 1 / 2 plus a sub-step checker texture."""
    gray = values.mean(axis=2)
    base = np.where(gray > np.median(gray), 2.0, 1.0)
    checker = _checker(gray.shape, rng)[..., 0]

    def render(level: int) -> Image.Image:
        steps = base + _SUB_STEP * _TEXTURE[level - 1] / _TEXTURE[0] * checker
        return Image.fromarray(np.rint(steps * (65535 / 255)).astype(np.uint16))  # mode I;16

    return render


def _variants(ref: int, seed: int, config: HiddenEvidenceConfig):
    """``(distortion, subset, level → image)`` per variant of one reference; every random draw is seeded."""
    rng = np.random.default_rng([seed, ref])
    side = config.view_side
    small = _array(make_reference(rng, side, side))
    large = _array(make_reference(rng, side * config.scale, side * config.scale))
    other = _array(make_reference(rng, side, side))
    dark = _array(make_reference(rng, side, side))
    yield "detail_a", "plain", _textured(small, rng)
    yield "detail_b", "plain", _textured(other, rng)
    if config.exposure_bits == 16:
        yield "dark_detail", "exposure_hidden", _deep_dark(dark, rng)
    else:
        textured_dark = _textured(dark, rng)
        yield "dark_detail", "exposure_hidden", lambda level: _image(_array(textured_dark(level)) * config.dark_gain)
    yield "fine_detail", "scale_hidden", _textured(large, rng)


def make_hidden_evidence_set(
    out_dir: str | Path,
    n_references: int = 8,
    seed: int = 0,
    config: HiddenEvidenceConfig = HiddenEvidenceConfig(),  # noqa: B008 (frozen dataclass: an immutable default)
    *,
    name: str = "hidden_evidence",
) -> list[IQAItem]:
    """Write the set under ``out_dir`` (``images/`` + ``manifest.csv``) and return its items in manifest order.

    ``n_references × 4 variants × 5 levels`` images: half ``plain``, a quarter each ``exposure_hidden`` and
    ``scale_hidden``.
    """
    if n_references < 1:
        raise ValueError(f"n_references must be ≥ 1, got {n_references}")
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    items, rows = [], []
    for ref in range(n_references):
        for distortion, subset, render in _variants(ref, seed, config):
            for level in range(1, LEVELS + 1):
                relative = f"images/r{ref:03d}_{distortion}_{level}.png"
                save_atomically(render(level), out_dir / relative, format="PNG")
                rows.append((relative, level_mos(level), f"r{ref:03d}", distortion, level, subset))
                items.append(IQAItem(out_dir / relative, level_mos(level), name))
    write_manifest(out_dir / "manifest.csv", ["image", "mos", "reference", "distortion", "level", "subset"], rows)
    return items


def read_subsets(manifest: str | Path) -> dict[Path, str]:
    """``{image path: subset}`` from a manifest with a ``subset`` column (paths resolved beside the manifest)."""
    manifest = Path(manifest)
    with manifest.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "subset" not in reader.fieldnames or "image" not in reader.fieldnames:
            raise ValueError(f"{manifest}: needs 'image' and 'subset' columns, has {reader.fieldnames}")
        return {(manifest.parent / row["image"]).resolve(): row["subset"] for row in reader}
