"""Formula pieces and asserts shared by the reward tests (hand computation in plain floats, never the code under test)."""

from __future__ import annotations

import math

import torch

from tooliqa_rewards import FormatRecord

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


# A well-formed trajectory: rubric, one magnifier call, the final answer.
RUBRIC = """<thinking>The roof edges are soft; the sky is clean.</thinking>
<answer>
Sharpness: Medium - Brief note
Noise: None - clean sky
Artifacts: Minor - faint blocks near the roof
Exposure: Good - balanced
Saliency Visibility: Subject Clear - Brief Note
</answer>"""
CALL = (
    "<thinking>Zoom in where edges look soft (is sharpness < medium?).</thinking>\n"
    '<tool_call>\n{"name": "magnifier", "arguments": {"bbox_2d": [120, 250, 480, 610]}}\n</tool_call>'
)
GAMMA = '<thinking>Too dark to judge.</thinking><tool_call>{"name": "gamma_corrector", "arguments": {"mode": "brighten"}}</tool_call>'
ANSWER = "<thinking>Mild blur, otherwise clean.</thinking>\n<answer>3.75</answer>"
GOOD = FormatRecord(rubric_text=RUBRIC, action_texts=(CALL, ANSWER), tool_calls_valid=(True,), score=3.75)
