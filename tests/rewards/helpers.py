"""Formula pieces and asserts shared by the reward tests (hand computation in plain floats, never the code under test)."""

from __future__ import annotations

import math

import torch

EPS = 1e-6


def phi(x: float) -> float:
    """Standard normal CDF."""
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def fid(p: float, g: float) -> float:
    """VisualQuality-R1's fidelity term."""
    return math.sqrt(p * g + EPS) + math.sqrt((1 - p) * (1 - g) + EPS)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def assert_near(got: torch.Tensor, expected: torch.Tensor, atol: float) -> None:
    """Element-wise |got − expected| ≤ atol (torch.testing.assert_close costs seconds on its first call)."""
    assert got.shape == expected.shape, (got.shape, expected.shape)
    assert (got.double() - expected.double()).abs().max().item() <= atol, (got, expected)


def t64(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def ones(b: int, g: int) -> torch.Tensor:
    return torch.ones(b, g, dtype=torch.bool)
