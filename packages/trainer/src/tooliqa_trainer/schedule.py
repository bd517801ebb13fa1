"""Step-indexed schedules: the KL coefficient β and the learning-rate multiplier.

Both are pure functions of the optimizer step (``trainer.global_step``), so a resumed run recomputes exactly the values
the interrupted run would have used: nothing but the step itself needs saving.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LR_SCHEDULES", "PiecewiseConstant", "constant_with_warmup", "cosine_with_warmup", "make_lr_lambda"]


@dataclass(frozen=True)
class PiecewiseConstant:
    """A value that holds from each breakpoint's step until the next breakpoint.

    The paper's KL schedule is ``PiecewiseConstant(((0, 0.04), (340, 0.06)))``: β = 0.04 for optimizer steps 0–339,
    0.06 from step 340 on.
    """

    points: tuple[tuple[int, float], ...]
    """``(first_step, value)`` pairs, steps strictly increasing, the first at step 0."""

    def __post_init__(self) -> None:
        points = tuple((int(step), float(value)) for step, value in self.points)
        object.__setattr__(self, "points", points)
        if not points or points[0][0] != 0:
            raise ValueError(f"schedule must start with a point at step 0, got {points}")
        steps = [step for step, _ in points]
        if any(b <= a for a, b in zip(steps, steps[1:])):
            raise ValueError(f"schedule steps must strictly increase, got {steps}")

    def __call__(self, step: int) -> float:
        """The value in force at optimizer step ``step`` (≥ 0)."""
        value = self.points[0][1]
        for first, v in self.points:
            if step < first:
                break
            value = v
        return value

    @property
    def max_value(self) -> float:
        """Largest value anywhere in the schedule (0 means the KL term — and the reference policy — is never needed)."""
        return max(value for _, value in self.points)


def _warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    return math.ceil(total_steps * warmup_ratio)


def constant_with_warmup(step: int, total_steps: int, warmup_ratio: float) -> float:
    """Linear warmup from 0 over ``ceil(ratio·total)`` steps, then 1 (transformers' constant-with-warmup)."""
    warmup = _warmup_steps(total_steps, warmup_ratio)
    return min(1.0, step / warmup) if warmup > 0 else 1.0


def cosine_with_warmup(step: int, total_steps: int, warmup_ratio: float) -> float:
    """Linear warmup, then a half cosine from 1 down to 0 at ``total_steps``."""
    warmup = _warmup_steps(total_steps, warmup_ratio)
    if step < warmup:
        return step / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


LR_SCHEDULES: dict[str, Callable[[int, int, float], float]] = {
    "constant_with_warmup": constant_with_warmup,
    "cosine_with_warmup": cosine_with_warmup,
}
"""Learning-rate multipliers by config name: ``(step, total_steps, warmup_ratio) → factor``."""


def make_lr_lambda(name: str, total_steps: int, warmup_ratio: float) -> Callable[[int], float]:
    """A ``LambdaLR`` multiplier for the schedule ``name`` over ``total_steps`` optimizer steps."""
    if name not in LR_SCHEDULES:
        raise ValueError(f"unknown lr schedule {name!r}; choose one of {sorted(LR_SCHEDULES)}")
    fn = LR_SCHEDULES[name]
    return lambda step: fn(step, total_steps, warmup_ratio)
