"""Magnifier geometry in plain Python: read a box, validate, clamp, grow, and size the view (SPEC §3).

Nothing here touches pixels, so the same plan drives the CPU and CUDA paths and the parser can explain a bad box
before any image work starts.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

from tooliqa_tools.config import MagnifierConfig
from tooliqa_tools.errors import ToolError

MAGNIFIER = "magnifier"
# Outward rounding of a fractional box tolerates float noise of coordinate conversion (e.g. 0.1 * 1000 → 100.00000001).
_EPS = 1e-6
_GROWTH_STEPS = 8


@dataclass(frozen=True)
class CropPlan:
    """Where to crop the original and how large the view is."""

    box: tuple[int, int, int, int]
    """Pixel box ``(x1, y1, x2, y2)`` of the original, half-open, after clamping and growth."""
    size: tuple[int, int]
    """View size ``(height, width)``, both multiples of ``config.multiple``."""

    @property
    def crop_size(self) -> tuple[int, int]:
        """``(height, width)`` of the crop before resizing."""
        x1, y1, x2, y2 = self.box
        return y2 - y1, x2 - x1


def _fail(reason: str) -> ToolError:
    return ToolError(f"{MAGNIFIER}: {reason}", tool=MAGNIFIER)


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def read_box(box: object) -> tuple[float, float, float, float]:
    """Four finite numbers from a JSON value, a sequence or a tensor; anything else raises ``ToolError``."""
    if hasattr(box, "tolist"):  # torch / numpy arrays and scalars
        box = box.tolist()
    if isinstance(box, str | bytes) or not isinstance(box, Sequence):
        raise _fail(f"bbox_2d must be a list of 4 numbers [x1, y1, x2, y2], got {_describe(box)}")
    if len(box) != 4:
        raise _fail(f"bbox_2d needs 4 numbers, got {len(box)}")
    values = []
    for value in box:
        # bool is an int subclass in Python; JSON true/false is not a coordinate.
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise _fail(f"bbox_2d needs 4 numbers, got {_describe(value)} among them")
        try:
            number = float(value)
        except OverflowError:  # an int too large for a float
            number = math.inf
        if not math.isfinite(number):
            raise _fail(f"bbox_2d needs 4 finite numbers, got {_describe(value)}")
        values.append(number)
    return values[0], values[1], values[2], values[3]


def to_pixels(box: Sequence[float], height: int, width: int, coords: str) -> tuple[float, float, float, float]:
    """Convert ``(x1, y1, x2, y2)`` from ``coords`` to pixels of a ``height × width`` image (no clamping)."""
    sx, sy = {"qwen1000": (width / 1000, height / 1000), "pixel": (1.0, 1.0), "unit": (float(width), float(height))}[
        coords
    ]
    x1, y1, x2, y2 = box
    return x1 * sx, y1 * sy, x2 * sx, y2 * sy


def from_pixels(box: Sequence[int], height: int, width: int, coords: str) -> list[float] | list[int]:
    """Express a pixel box in ``coords`` again (integers for "qwen1000"/"pixel", 3 decimals for "unit")."""
    x1, y1, x2, y2 = box
    if coords == "pixel":
        return [x1, y1, x2, y2]
    if coords == "qwen1000":
        return [
            round(x1 * 1000 / width),
            round(y1 * 1000 / height),
            round(x2 * 1000 / width),
            round(y2 * 1000 / height),
        ]
    return [round(x1 / width, 3), round(y1 / height, 3), round(x2 / width, 3), round(y2 / height, 3)]


def _whole_pixels(lo: float, hi: float, extent: int) -> tuple[int, int]:
    """Round ``[lo, hi)`` outward to whole pixels inside ``[0, extent)``; a sliver inside one pixel keeps that pixel."""
    start = min(math.floor(lo + _EPS), extent - 1)
    return start, max(min(math.ceil(hi - _EPS), extent), start + 1)


def _grow(lo: int, hi: int, extent: int, min_side: int) -> tuple[int, int]:
    """Grow ``[lo, hi)`` around its centre to ``min(min_side, extent)`` pixels, shifted to stay inside ``[0, extent)``."""
    side = min(min_side, extent)
    if hi - lo >= side:
        return lo, hi
    start = round((lo + hi - side) / 2)
    start = min(max(start, 0), extent - side)
    return start, start + side


def _snap(length: float, cap: float, multiple: int) -> int:
    """Nearest multiple of ``multiple`` to ``length`` (at least one multiple), stepping down when it exceeds ``cap``."""
    snapped = max(multiple, round(length / multiple) * multiple)
    if snapped > cap + _EPS:
        snapped = max(multiple, math.floor(cap / multiple) * multiple)
    return snapped


def fit_pixels(height: int, width: int, min_pixels: int, max_pixels: int, multiple: int) -> tuple[int, int]:
    """``(height, width)`` rounded to multiples of ``multiple`` and scaled into ``[min_pixels, max_pixels]``.

    The same arithmetic as the Qwen2/3-VL processors' ``smart_resize``, so an image of this size passes through the
    transformers and vLLM processors unchanged.
    """
    out_h = max(multiple, round(height / multiple) * multiple)
    out_w = max(multiple, round(width / multiple) * multiple)
    if out_h * out_w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        out_h = max(multiple, math.floor(height / beta / multiple) * multiple)
        out_w = max(multiple, math.floor(width / beta / multiple) * multiple)
    elif out_h * out_w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        out_h = math.ceil(height * beta / multiple) * multiple
        out_w = math.ceil(width * beta / multiple) * multiple
    return out_h, out_w


def view_size(crop_h: int, crop_w: int, long_side: int, config: MagnifierConfig) -> tuple[int, int]:
    """View ``(height, width)`` of a ``crop_h × crop_w`` crop: longer side → ``long_side``, zoom and pixel caps.

    Both caps hold whenever the crop side is ≥ ``min_side`` (guaranteed unless the image itself is smaller), since
    ``MagnifierConfig`` checks ``min_side * max_zoom >= multiple``. The view holds at least ``config.min_pixels``:
    :func:`plan_crop` grows a crop until the zoom cap allows that; where the original is too small for it the minimum
    wins over the zoom cap (the processor would enlarge the view anyway, in a second resize).
    """
    area = crop_h * crop_w
    scale = min(long_side / max(crop_h, crop_w), config.max_zoom, math.sqrt(config.max_pixels / area))
    scale = max(scale, math.sqrt(config.min_pixels / area))
    target_h, target_w = crop_h * scale, crop_w * scale
    zoom_cap = max(config.max_zoom, scale)
    out_h = _snap(target_h, crop_h * zoom_cap, config.multiple)
    out_w = _snap(target_w, crop_w * zoom_cap, config.multiple)
    if out_h * out_w > config.max_pixels:  # rounding up overshot the budget: floor both (≤ target, so within it)
        out_h = max(config.multiple, math.floor(target_h / config.multiple) * config.multiple)
        out_w = max(config.multiple, math.floor(target_w / config.multiple) * config.multiple)
    elif out_h * out_w < config.min_pixels:  # rounding down undershot the minimum: ceil both (≥ target)
        out_h = math.ceil(target_h / config.multiple) * config.multiple
        out_w = math.ceil(target_w / config.multiple) * config.multiple
    while out_h * out_w > config.max_pixels:  # a side below one multiple was rounded up to it: shorten the other
        if out_h >= out_w:
            out_h -= config.multiple
        else:
            out_w -= config.multiple
    return out_h, out_w


def _grow_to_area(box: tuple[int, int, int, int], height: int, width: int, area: float) -> tuple[int, int, int, int]:
    """Grow a pixel box around its centre (keeping its aspect while the image allows) to at least ``area`` pixels."""
    x1, y1, x2, y2 = box
    box_h, box_w = y2 - y1, x2 - x1
    if box_h * box_w >= area:
        return box
    factor = math.sqrt(area / (box_h * box_w))
    new_h = min(height, math.ceil(box_h * factor))
    new_w = min(width, max(math.ceil(box_w * factor), math.ceil(area / new_h)))
    new_h = min(height, max(new_h, math.ceil(area / new_w)))
    x1, x2 = _grow(x1, x2, width, new_w)
    y1, y2 = _grow(y1, y2, height, new_h)
    return x1, y1, x2, y2


def plan_crop(box: object, height: int, width: int, config: MagnifierConfig) -> CropPlan:
    """Validate ``box`` (in ``config.coords``) against a ``height × width`` original and plan the view.

    Order (SPEC §3): 4 finite numbers → pixels → clamp into the image → non-empty → aspect ≤ ``max_aspect`` →
    outward rounding to whole pixels → grow sides below ``min_side`` around the centre → grow the box around its
    centre until the zoom cap reaches ``min_pixels`` (the processor's minimum: without this the processor would
    resize the view a second time, past the zoom cap) → view size inside ``[min_pixels, max_pixels]``.
    Raises ``ToolError`` for every bad box; never anything else.
    """
    values = read_box(box)
    x1, y1, x2, y2 = to_pixels(values, height, width, config.coords)
    cx1, cx2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    cy1, cy2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    if not (cx1 < cx2 and cy1 < cy2):
        raise _fail(
            f"the box [{', '.join(f'{v:g}' for v in values)}] is empty inside the image "
            f"(needs x1 < x2 and y1 < y2 after clamping; coordinates: {config.coords})"
        )
    box_w, box_h = cx2 - cx1, cy2 - cy1
    aspect = max(box_w, box_h) / min(box_w, box_h)
    if aspect > config.max_aspect:
        raise _fail(f"the box is too thin: aspect ratio {aspect:.4g} exceeds {config.max_aspect:g}")
    px1, px2 = _whole_pixels(cx1, cx2, width)
    py1, py2 = _whole_pixels(cy1, cy2, height)
    px1, px2 = _grow(px1, px2, width, config.min_side)
    py1, py2 = _grow(py1, py2, height, config.min_side)
    box = _grow_to_area((px1, py1, px2, py2), height, width, config.min_pixels / config.max_zoom**2)
    for _ in range(_GROWTH_STEPS):  # rounding a thin side to its multiple can still need a little more context
        size = view_size(box[3] - box[1], box[2] - box[0], max(height, width), config)
        crop_h, crop_w = box[3] - box[1], box[2] - box[0]
        within_zoom = size[0] <= crop_h * config.max_zoom + _EPS and size[1] <= crop_w * config.max_zoom + _EPS
        if within_zoom or (crop_h, crop_w) == (height, width):
            break
        box = _grow_to_area(box, height, width, 1.25 * crop_h * crop_w)
    return CropPlan(box=box, size=size)
