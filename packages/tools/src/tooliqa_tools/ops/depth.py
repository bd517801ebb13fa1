"""Bit depth: originals may be 8-bit (uint8) or 16-bit (uint16); every view the model sees is 8-bit.

A 16-bit original (a camera's linear or raw-developed file, a 16-bit PNG) holds shadow detail that an 8-bit view
rounds away; the Gamma Corrector reads the 16 bits (SPEC §3: it applies to the original) and only its output is
rounded to 8 bits, so brightening recovers what the global view cannot show. The Magnifier gains nothing from depth:
it crops the 8-bit rendering.
"""

from __future__ import annotations

from functools import lru_cache

import torch

ORIGINAL_DTYPES = (torch.uint8, torch.uint16)
"""The pixel types an original may have."""


def check_original(image: object, what: str) -> torch.Tensor:
    """``image`` if it is a uint8 or uint16 ``[3, H, W]`` tensor, else a ``ValueError`` naming ``what``."""
    if not isinstance(image, torch.Tensor) or image.dtype not in ORIGINAL_DTYPES or image.dim() != 3:
        got = (image.dtype, tuple(image.shape)) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"{what} must be a uint8 or uint16 [3, H, W] tensor, got {got!r:.80}")
    if image.shape[0] != 3:
        raise ValueError(f"{what} must have 3 channels first, got shape {tuple(image.shape)}")
    return image


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """The 8-bit rendering of an original: uint8 as it is; uint16 ``round(x · 255 / 65535)`` (same device)."""
    if image.dtype == torch.uint8:
        return image
    if image.dtype != torch.uint16:
        raise ValueError(f"to_uint8 expects uint8 or uint16 pixels, got {image.dtype}")
    # integer round-half-up of x·255/65535: exact, identical on every device
    return ((image.to(torch.int32) * 255 + 32767) // 65535).to(torch.uint8)


@lru_cache(maxsize=64)
def _table16(gamma: float, device: torch.device) -> torch.Tensor:
    levels = torch.arange(65536, dtype=torch.float64) / 65535
    # torch.round is half-to-even like the 8-bit table's Python round
    return torch.round(255 * levels.pow(gamma)).to(torch.uint8).to(device)


def gamma_table16(gamma: float) -> torch.Tensor:
    """The exact 16-bit → 8-bit LUT ``round(255 · (i / 65535)^γ)``, i = 0…65535, uint8 ``[65536]`` (a fresh copy)."""
    return _table16(float(gamma), torch.device("cpu")).clone()


def gamma_correct16(image: torch.Tensor, gamma: float) -> torch.Tensor:
    """I_out = I_in^γ of a uint16 image of any shape, through the exact table: the 8-bit view, uint8, same shape."""
    if image.dtype != torch.uint16:
        raise ValueError(f"gamma_correct16 expects uint16 pixels, got {image.dtype}")
    return _table16(float(gamma), image.device)[image.to(torch.int64)]
