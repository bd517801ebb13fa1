"""A one-pass uint8 LUT kernel for CUDA (Triton), with per-image tables.

torch has no uint8 gather: ``lut[x.long()]`` widens every byte to 8 and moves ~17× the image's bytes; this kernel
reads each byte once and writes it once (measured on an H200, batch 48 × 1024×768: 0.06 ms vs 1.04 ms).
Triton is imported lazily, only for CUDA tensors; ``available()`` is False where it cannot run.
"""

from __future__ import annotations

from functools import cache

import torch

_BLOCK = 8192  # bytes per program: the fastest of 1k–16k on an H200


@cache
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def lut_kernel(x_ptr, lut_ptr, out_ptr, per_image, BLOCK: tl.constexpr):
        block = tl.program_id(0)
        image = tl.program_id(1).to(tl.int64)
        offsets = block * BLOCK + tl.arange(0, BLOCK)
        mask = offsets < per_image
        base = image * per_image
        values = tl.load(x_ptr + base + offsets, mask=mask, other=0)
        mapped = tl.load(lut_ptr + image * 256 + values.to(tl.int32), mask=mask, other=0)
        tl.store(out_ptr + base + offsets, mapped, mask=mask)

    return triton, lut_kernel


@cache
def available() -> bool:
    """Whether the Triton kernel can run here (Triton importable and a CUDA device present)."""
    try:
        _kernel()
    except ImportError:
        return False
    return torch.cuda.is_available()


def apply_luts(batch: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, ...]`` on CUDA through uint8 ``tables`` ``[B, 256]`` (same device): a fresh contiguous tensor."""
    triton, lut_kernel = _kernel()
    source = batch.contiguous()
    out = torch.empty_like(source)
    per_image = source[0].numel()
    lut_kernel[(triton.cdiv(per_image, _BLOCK), source.shape[0])](source, tables.contiguous(), out, per_image, _BLOCK)
    return out
