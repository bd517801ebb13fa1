"""uint8 → uint8 antialiased bicubic resize on CUDA in one Triton kernel.

torch's CUDA antialiased kernel only takes floats: the float path copies crops to float32, resamples, then clamps and
casts (four passes over float buffers; ~80 µs per 1024×768 view on an H200, the bulk of the Magnifier's time).
This kernel reads the uint8 crops and writes uint8 views directly, with the same separable weights as torch and PIL
(``bicubic_weights.aa_weights``), accumulating in float32. Triton is imported lazily, only for CUDA tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import torch

from tooliqa_tools.ops.bicubic_weights import aa_weights

_BLOCK_Y, _BLOCK_X = 16, 64
MAX_TAPS = 12
"""Per-axis tap limit (shrinking by more than ~2.5× needs more): beyond it the float path runs instead."""


@cache
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def resize_kernel(
        src, dst, first_y, weights_y, first_x, weights_x, in_h, in_w, out_h, out_w,
        TAPS_Y: tl.constexpr, TAPS_X: tl.constexpr, BLOCK_Y: tl.constexpr, BLOCK_X: tl.constexpr,
    ):  # fmt: skip
        plane = tl.program_id(2).to(tl.int64)  # image · 3 + channel
        out_y = tl.program_id(1) * BLOCK_Y + tl.arange(0, BLOCK_Y)
        out_x = tl.program_id(0) * BLOCK_X + tl.arange(0, BLOCK_X)
        mask_y, mask_x = out_y < out_h, out_x < out_w
        mask = mask_y[:, None] & mask_x[None, :]
        y0 = tl.load(first_y + out_y, mask=mask_y, other=0)
        x0 = tl.load(first_x + out_x, mask=mask_x, other=0)
        source = src + plane * in_h * in_w
        total = tl.zeros((BLOCK_Y, BLOCK_X), dtype=tl.float32)
        for i in tl.static_range(TAPS_Y):
            row = tl.minimum(y0 + i, in_h - 1)  # padded taps have weight 0: any valid row will do
            w_y = tl.load(weights_y + out_y * TAPS_Y + i, mask=mask_y, other=0.0)
            line = tl.zeros((BLOCK_Y, BLOCK_X), dtype=tl.float32)
            for j in tl.static_range(TAPS_X):
                col = tl.minimum(x0 + j, in_w - 1)
                w_x = tl.load(weights_x + out_x * TAPS_X + j, mask=mask_x, other=0.0)
                pixel = tl.load(source + row[:, None] * in_w + col[None, :], mask=mask, other=0)
                line += pixel.to(tl.float32) * w_x[None, :]
            total += line * w_y[:, None]
        # +0.5 then truncation rounds half up; the clamp absorbs bicubic overshoot.
        value = tl.minimum(tl.maximum(total + 0.5, 0.0), 255.0).to(tl.uint8)
        tl.store(dst + plane * out_h * out_w + out_y[:, None] * out_w + out_x[None, :], value, mask=mask)

    return triton, resize_kernel


@cache
def available() -> bool:
    """Whether the kernel can run here (Triton importable and a CUDA device present)."""
    try:
        _kernel()
    except ImportError:
        return False
    return torch.cuda.is_available()


@cache
def _weights(in_size: int, out_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    first, weights = aa_weights(in_size, out_size)
    return first.to(device), weights.contiguous().to(device)


@cache
def taps(in_size: int, out_size: int) -> int:
    """Taps per output pixel along one axis."""
    return aa_weights(in_size, out_size)[1].shape[1]


def resize_uint8(items: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """Same-shaped uint8 ``[3, h, w]`` CUDA images → uint8 ``[N, 3, height, width]`` (contiguous)."""
    triton, resize_kernel = _kernel()
    first = items[0]
    (in_h, in_w), (out_h, out_w) = first.shape[-2:], size
    source = torch.stack(list(items))  # one contiguous uint8 batch: a small copy next to the output
    out = torch.empty((len(items), 3, out_h, out_w), dtype=torch.uint8, device=first.device)
    first_y, weights_y = _weights(in_h, out_h, first.device)
    first_x, weights_x = _weights(in_w, out_w, first.device)
    grid = (triton.cdiv(out_w, _BLOCK_X), triton.cdiv(out_h, _BLOCK_Y), len(items) * 3)
    resize_kernel[grid](
        source, out, first_y, weights_y, first_x, weights_x, in_h, in_w, out_h, out_w,
        weights_y.shape[1], weights_x.shape[1], _BLOCK_Y, _BLOCK_X,
    )  # fmt: skip
    return out
