"""Typed configs of the two tools (SPEC §3 defaults; every value is overridable from YAML)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Coords = Literal["qwen1000", "pixel", "unit"]
COORD_SYSTEMS: tuple[str, ...] = ("qwen1000", "pixel", "unit")

QWEN3_VL_MIN_PIXELS = 65_536
"""Qwen3-VL-8B-Instruct's ``preprocessor_config.json`` ``shortest_edge``: the fewest pixels its processor keeps."""
QWEN3_VL_MAX_PIXELS = 16_777_216
"""Qwen3-VL-8B-Instruct's ``longest_edge``: the most pixels its processor keeps."""


def _check_bounds(owner: str, min_pixels: int, max_pixels: int, multiple: int) -> None:
    if min_pixels < 1 or max_pixels < max(min_pixels, multiple**2):
        raise ValueError(
            f"{owner}: need 1 <= min_pixels <= max_pixels and max_pixels >= multiple² = {multiple**2}, "
            f"got {min_pixels}, {max_pixels}"
        )


@dataclass(frozen=True)
class MagnifierConfig:
    """How the Magnifier reads a box and sizes its view."""

    coords: Coords = "qwen1000"
    """Coordinate system of ``bbox_2d``: "qwen1000" (Qwen3-VL's relative 0–1000 grid of the original image), "pixel"
    (pixels of the original) or "unit" (fractions 0–1). Declared, never guessed from the values."""
    min_side: int = 28
    """A box side shorter than this (original pixels) grows around its centre to this length (or the image side)."""
    max_aspect: float = 100.0
    """Longest/shortest side ratio of the clamped box above which the call fails."""
    max_zoom: float = 4.0
    """Largest upscaling factor of the crop."""
    min_pixels: int = QWEN3_VL_MIN_PIXELS
    """Fewest pixels of the view (the processor's minimum; the agent sets it from its processor). A crop whose view
    would be smaller at the zoom cap takes in more of the original around the box centre, so the view is made in
    one resize and the processor never resizes it again; only an original too small for that is zoomed past the cap."""
    max_pixels: int = QWEN3_VL_MAX_PIXELS
    """Pixel budget of the view (the processor's maximum; the agent sets it from its processor)."""
    multiple: int = 32
    """Both view sides are multiples of this (Qwen3-VL patch 16 × merge 2), so every processor computes one grid."""

    def __post_init__(self) -> None:
        if self.coords not in COORD_SYSTEMS:
            raise ValueError(f"MagnifierConfig.coords must be one of {COORD_SYSTEMS}, got {self.coords!r}")
        if self.min_side < 1 or self.multiple < 1:
            raise ValueError(
                f"MagnifierConfig: min_side and multiple must be ≥ 1, got {self.min_side}, {self.multiple}"
            )
        if not (math.isfinite(self.max_aspect) and self.max_aspect >= 1):
            raise ValueError(f"MagnifierConfig.max_aspect must be a finite number ≥ 1, got {self.max_aspect}")
        # These two keep the caps satisfiable: the smallest view (one multiple) must fit the zoom and pixel caps.
        if not (math.isfinite(self.max_zoom) and self.min_side * self.max_zoom >= self.multiple):
            raise ValueError(
                f"MagnifierConfig: min_side * max_zoom must be ≥ multiple, got {self.min_side} * {self.max_zoom}"
            )
        _check_bounds("MagnifierConfig", self.min_pixels, self.max_pixels, self.multiple)


@dataclass(frozen=True)
class GammaConfig:
    """The Gamma Corrector's modes and numeric range (I_out = I_in^γ on [0, 1])."""

    brighten: float = 0.5
    """γ of mode "brighten" (< 1 lifts shadows)."""
    darken: float = 2.0
    """γ of mode "darken" (> 1 recovers highlights)."""
    min_gamma: float = 0.2
    """Smallest accepted explicit ``gamma``."""
    max_gamma: float = 5.0
    """Largest accepted explicit ``gamma``."""
    min_pixels: int = QWEN3_VL_MIN_PIXELS
    """Fewest pixels of the view (the processor's minimum; the agent sets it from its processor)."""
    max_pixels: int = QWEN3_VL_MAX_PIXELS
    """Most pixels of the view (the processor's maximum): a larger original's view is resized (bicubic, antialiased)
    into the bounds after the correction, exactly as the processor would size it, so it is never resized again."""
    multiple: int = 32
    """View sides are multiples of this; an original that is not is resized (bicubic) to the nearest multiples."""

    def __post_init__(self) -> None:
        if not 0 < self.min_gamma <= self.brighten < 1 < self.darken <= self.max_gamma < math.inf:
            raise ValueError(
                "GammaConfig needs 0 < min_gamma <= brighten < 1 < darken <= max_gamma < inf, got "
                f"{self.min_gamma}, {self.brighten}, {self.darken}, {self.max_gamma}"
            )
        if self.multiple < 1:
            raise ValueError(f"GammaConfig.multiple must be ≥ 1, got {self.multiple}")
        _check_bounds("GammaConfig", self.min_pixels, self.max_pixels, self.multiple)


DEFAULT_MAGNIFIER = MagnifierConfig()
"""The SPEC §3 Magnifier defaults (a frozen instance, safe to share as an argument default)."""
DEFAULT_GAMMA = GammaConfig()
"""The SPEC §3 Gamma Corrector defaults (a frozen instance, safe to share as an argument default)."""
