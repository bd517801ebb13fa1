"""Separable antialiased bicubic weights, exactly as torch's ``antialias=True`` kernels and PIL compute them.

For each output index: the first input index it reads and its (normalised, zero-padded) taps. They drive the CUDA
Triton resize kernel; on CPU they are checked against ``F.interpolate`` through a dense-matrix reference.
"""

from __future__ import annotations

import torch

_A = -0.5  # PIL's / torch-antialias bicubic coefficient


def _bicubic(x: torch.Tensor) -> torch.Tensor:
    x = x.abs()
    near = ((_A + 2) * x - (_A + 3)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * _A
    return torch.where(x < 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def aa_weights(in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(first, weights)``: int32 ``[out_size]`` first input index, float32 ``[out_size, K]`` taps (zero-padded).

    Output ``i`` is ``sum_k weights[i, k] · input[first[i] + k]``; taps beyond a row's support are 0 (their indices
    may run past the input and must be clamped by the caller).
    """
    scale = in_size / out_size
    support = 2.0 * max(scale, 1.0)  # bicubic support 2, widened when shrinking (the antialias)
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    centers = (torch.arange(out_size, dtype=torch.float64) + 0.5) * scale
    first = torch.clamp((centers - support + 0.5).trunc(), min=0).to(torch.int64)
    last = torch.clamp((centers + support + 0.5).trunc(), max=in_size).to(torch.int64)
    sizes = last - first
    taps = int(sizes.max())
    offsets = torch.arange(taps, dtype=torch.float64)
    weights = _bicubic((offsets[None, :] + first[:, None] - centers[:, None] + 0.5) * invscale)
    weights = torch.where(offsets[None, :] < sizes[:, None], weights, torch.zeros_like(weights))
    weights = weights / weights.sum(dim=1, keepdim=True)
    return first.to(torch.int32), weights.to(torch.float32)


def dense_matrix(in_size: int, out_size: int) -> torch.Tensor:
    """float64 ``[out_size, in_size]`` resampling matrix of ``aa_weights`` (a slow reference for tests)."""
    first, weights = aa_weights(in_size, out_size)
    matrix = torch.zeros(out_size, in_size + weights.shape[1], dtype=torch.float64)
    for row in range(out_size):
        matrix[row, int(first[row]) : int(first[row]) + weights.shape[1]] = weights[row].double()
    return matrix[:, :in_size]
