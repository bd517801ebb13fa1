"""Step bookkeeping of the GRPO module: phase timings, index slices for (micro-)batches, right-padded rows."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

__all__ = ["StepTimer", "chunks", "pad_rows"]


class StepTimer:
    """Wall-clock seconds per named phase of a step."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


def chunks(indices: Sequence[int], size_or_count: int, by_count: bool = False) -> Iterator[list[int]]:
    """Consecutive slices of ``indices``: of ``size`` each, or ``count`` near-equal slices when ``by_count``."""
    indices = list(indices)
    if by_count:
        count = min(size_or_count, len(indices))
        bounds = [round(k * len(indices) / count) for k in range(count + 1)]
        yield from (indices[a:b] for a, b in zip(bounds, bounds[1:]))
    else:
        yield from (indices[k : k + size_or_count] for k in range(0, len(indices), size_or_count))


def pad_rows(rows: Sequence[torch.Tensor], length: int) -> torch.Tensor:
    """Right-pad 1-D rows with zeros to ``[len(rows), length]`` (matching collate's right padding)."""
    out = rows[0].new_zeros(len(rows), length)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out
