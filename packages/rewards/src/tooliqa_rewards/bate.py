"""BATE, the Batch-Aware Tool-Efficiency reward (paper §3.4, eq. 2 and 3; SPEC §4).

Per image, the G trajectories split into T (≥ 1 successful tool call) and N (no tool call at all); trajectories
whose calls all failed belong to neither. With s = a trajectory's rank reward, for t ∈ T:

    R_base(t) = c · mean over n ∈ N of sqrt(Φ((s_t − s_n) / τ))          (c · sqrt(½) when N is empty)
    ρ ≤ ρ̂:  R(t) = R_base(t) + λ · tanh((ρ̂ − ρ) / 2w) · m_low(ρ) · s_t    m_low  = 1 + (k − 1) · σ((ρ_lo − ρ) / w′)
    ρ > ρ̂:  R(t) = R_base(t) − λ · tanh((ρ − ρ̂) / 2w) · m_high(ρ)         m_high = 1 + (k − 1) · σ((ρ − ρ_hi) / w′)

and R = 0 outside T. ρ is the batch tool rate: trajectories with a successful call over trajectories with a valid
score. Both shaping terms vanish at ρ̂, so R is continuous in ρ, and it is non-increasing in ρ for s ≥ 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tooliqa_rewards.errors import RewardInputError, expect_batch, float_dtype

_SQRT1_2 = math.sqrt(0.5)


@dataclass(frozen=True)
class BATEConfig:
    """Constants of BATE; defaults are SPEC §4's (paper §4.1 for ρ̂ and the band)."""

    temperature: float = 0.1
    """τ of the tool-free duels, Φ((s_t − s_n)/τ); rank-reward differences are O(0.1)."""
    base_scale: float = 0.5
    """c, the scale of the duel term R_base."""
    shaping_scale: float = 0.2
    """λ, the scale of the incentive and penalty curves."""
    shaping_width: float = 0.05
    """w: the curves are tanh(|ρ − ρ̂| / 2w), so they saturate a few w away from the target."""
    band_width: float = 0.02
    """w′, the sigmoid width of the switch to full strength outside the band."""
    target_rate: float = 0.5
    """ρ̂, the tool rate the shaping steers toward; incentive at or below it, penalty above it."""
    band_low: float = 0.35
    """Lower band edge ρ_lo: below it the incentive tends to `outside_band_factor` times its strength."""
    band_high: float = 0.65
    """Upper band edge ρ_hi: above it the penalty tends to `outside_band_factor` times its strength."""
    outside_band_factor: float = 3.0
    """k, the strength multiplier far outside [ρ_lo, ρ_hi] (the paper's "threefold"): m = 1 + (k − 1)·σ(·)."""
    center: bool = False
    """Subtract c·sqrt(½) from R_base so that a tie with the tool-free siblings earns 0 (off: paper-literal)."""

    def __post_init__(self) -> None:
        for name in ("temperature", "shaping_width", "band_width"):
            if not getattr(self, name) > 0:
                raise ValueError(f"BATEConfig.{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.band_low <= self.target_rate <= self.band_high <= 1.0:
            raise ValueError(
                "BATEConfig needs 0 ≤ band_low ≤ target_rate ≤ band_high ≤ 1, got "
                f"{self.band_low}, {self.target_rate}, {self.band_high}"
            )
        if not self.outside_band_factor >= 1.0:
            raise ValueError(f"BATEConfig.outside_band_factor must be ≥ 1, got {self.outside_band_factor}")


def _sigmoid(x: float) -> float:
    """Logistic function that does not overflow for large |x|."""
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def bate_shaping(rho: float, config: BATEConfig) -> tuple[float, float]:
    """Eq. 3's shaping as (slope, offset): the term added to R_base(t) is slope · s_t + offset."""
    c = config
    if rho <= c.target_rate:
        strength = 1.0 + (c.outside_band_factor - 1.0) * _sigmoid((c.band_low - rho) / c.band_width)
        return c.shaping_scale * math.tanh((c.target_rate - rho) / (2 * c.shaping_width)) * strength, 0.0
    strength = 1.0 + (c.outside_band_factor - 1.0) * _sigmoid((rho - c.band_high) / c.band_width)
    return 0.0, -c.shaping_scale * math.tanh((rho - c.target_rate) / (2 * c.shaping_width)) * strength


def batch_tool_rate(used_tool: torch.Tensor, valid: torch.Tensor) -> float:
    """ρ: trajectories with ≥ 1 successful tool call among those with a valid score (0.0 when none is valid).

    Pass tensors gathered over all ranks, or a rate computed from them, to get the whole batch's ρ.
    """
    if used_tool.shape != valid.shape or used_tool.dtype != torch.bool or valid.dtype != torch.bool:
        raise RewardInputError(
            f"batch_tool_rate: used_tool and valid must be bool tensors of one shape, got "
            f"{used_tool.dtype}{list(used_tool.shape)} and {valid.dtype}{list(valid.shape)}"
        )
    counts = torch.stack([(used_tool & valid).sum(), valid.sum()]).tolist()  # one device sync
    return counts[0] / counts[1] if counts[1] else 0.0


@torch.no_grad()
def bate_reward(
    rank: torch.Tensor,
    used_tool: torch.Tensor,
    tool_free: torch.Tensor,
    valid: torch.Tensor,
    config: BATEConfig = BATEConfig(),
    *,
    rho: float | None = None,
) -> tuple[torch.Tensor, float]:
    """BATE for every trajectory.

    Args:
        rank: float ``[B, G]``, each trajectory's rank reward s (non-finite values count as 0).
        used_tool: bool ``[B, G]``, ≥ 1 successful tool call (wins over ``tool_free`` if both are set).
        tool_free: bool ``[B, G]``, no tool call at all.
        valid: bool ``[B, G]``, the trajectory has a valid final score; invalid ones are in neither T nor N.
        config: the constants.
        rho: the batch tool rate to shape with; None computes it from ``used_tool`` and ``valid`` (pass it when the
            batch is sharded over ranks, or to pin ρ in a test).

    Returns:
        (reward ``[B, G]``, ρ): reward is 0 outside T (tool-free, failed-only and invalid trajectories).
    """
    expect_batch(
        "bate_reward",
        rank,
        used_tool=(used_tool, "bool", False),
        tool_free=(tool_free, "bool", False),
        valid=(valid, "bool", False),
    )
    if rho is None:
        rho = batch_tool_rate(used_tool, valid)
    elif not 0.0 <= rho <= 1.0:  # also rejects NaN
        raise RewardInputError(f"bate_reward: rho must be in [0, 1], got {rho}")
    dtype = float_dtype(rank)
    s = torch.nan_to_num(rank.to(dtype), nan=0.0, posinf=0.0, neginf=0.0)
    in_t = used_tool & valid
    in_n = (tool_free & valid & ~used_tool).to(dtype)

    # sqrt(Φ(d/τ)) = sqrt(½) · sqrt(erfc(−d / (τ√2))), d = s_t − s_n: [B, G, G]
    duels = (s[:, :, None] - s[:, None, :]).mul_(-_SQRT1_2 / config.temperature).erfc_().sqrt_()
    n_free = in_n.sum(1, keepdim=True)
    mean_duel = torch.bmm(duels, in_n[:, :, None]).squeeze(-1) * (_SQRT1_2 / n_free.clamp(min=1))
    mean_duel = torch.where(n_free > 0, mean_duel, _SQRT1_2)
    offset = config.base_scale * _SQRT1_2 if config.center else 0.0
    slope, shift = bate_shaping(rho, config)
    reward = config.base_scale * mean_duel + (slope * s + (shift - offset))
    return torch.where(in_t, reward, 0.0), rho
