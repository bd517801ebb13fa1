"""Group-relative advantage estimators: one scalar per trajectory from the rewards of its image's group of G.

``"grpo"`` is the paper's (SPEC §5, TRL ``scale_rewards="group"``): A = (R − mean_G) / (std_G + 1e-4) with the unbiased
group standard deviation, as TRL computes it. ``"rloo"`` (REINFORCE leave-one-out, Ahmadian et al. 2024) subtracts the
mean of the *other* G − 1 rewards and does not rescale — a common low-variance alternative without std division.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

__all__ = ["ADVANTAGES", "grpo_advantages", "make_advantage", "rloo_advantages"]

STD_EPS = 1e-4
"""Added to the group standard deviation (TRL's value) so an all-equal group gives A = 0, not NaN."""


def grpo_advantages(rewards: Tensor) -> Tensor:
    """(R − mean_G) / (std_G + 1e-4).

    Args:
        rewards: ``[B, G]`` total reward of trajectory g of image b.

    Returns:
        ``[B, G]`` advantages.
    """
    _check(rewards)
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True)  # unbiased (G − 1), as TRL
    return (rewards - mean) / (std + STD_EPS)


def rloo_advantages(rewards: Tensor) -> Tensor:
    """R − mean of the group's other G − 1 rewards: ``[B, G]`` → ``[B, G]``."""
    _check(rewards)
    group = rewards.shape[1]
    others = (rewards.sum(dim=1, keepdim=True) - rewards) / (group - 1)
    return rewards - others


def _check(rewards: Tensor) -> None:
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be [B, G] with G ≥ 2, got shape {tuple(rewards.shape)}")


ADVANTAGES: dict[str, Callable[[Tensor], Tensor]] = {"grpo": grpo_advantages, "rloo": rloo_advantages}
"""Advantage estimators by config name: ``[B, G]`` rewards → ``[B, G]`` advantages."""


def make_advantage(name: str) -> Callable[[Tensor], Tensor]:
    """The estimator ``name`` (a key of :data:`ADVANTAGES`)."""
    if name not in ADVANTAGES:
        raise ValueError(f"unknown advantage estimator {name!r}; choose one of {sorted(ADVANTAGES)}")
    return ADVANTAGES[name]
