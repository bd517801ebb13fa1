"""Clipped policy-gradient losses with a per-token KL penalty to the reference policy (SPEC §5).

Both variants share one structure (TRL ``GRPOTrainer._compute_loss`` with ``loss_type="grpo"``):

* an importance weight w = exp(log_w) against the rollout ("old") policy, clipped PPO-style to
  [1 − ε_low, 1 + ε_high]; per token ℓ_t = −min(w·A, clip(w)·A);
* plus β·KL_k3 per token, KL_k3 = exp(ref − logπθ) − (ref − logπθ) − 1 (Schulman's unbiased, always ≥ 0 estimator);
* aggregated as the mean over each trajectory's model tokens, then the mean over trajectories.

They differ only in the importance weight: ``"gspo"`` (the paper's choice, Zheng et al. 2025) uses one weight per
trajectory, the geometric mean of the token ratios, s_i = exp(mean_t(logπθ − logπ_old)); ``"grpo"`` uses the per-token
ratio. With one update per rollout batch both ratios are exactly 1 and the two losses have the same value and gradient.

Advantages are one per trajectory ``[N]`` or one per token ``[N, L]`` (``tooliqa_trainer.credit``). GSPO takes the
latter in the GSPO paper's token form, s_i,t = sg[s_i] · π(y_t) / sg[π(y_t)]: the same value and clip as s_i, and with
one advantage per trajectory the same gradient, but each token's gradient carries its own advantage.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["LOSSES", "GRPOLoss", "GSPOLoss", "LossStats", "PolicyLoss", "make_loss", "masked_trajectory_mean"]


def masked_trajectory_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean over each row's masked positions, then over rows.

    Args:
        values: ``[N, L]`` (or ``[N, 1]``, broadcast over L).
        mask: ``[N, L]`` bool, True on model-generated tokens. A row without any token contributes 0.

    Returns:
        A scalar.
    """
    mask = mask.to(values.dtype) if values.is_floating_point() else mask.float()
    per_row = (values * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
    return per_row.mean()


@dataclass(frozen=True)
class LossStats:
    """What one loss evaluation measured (plain floats, detached); all are trajectory-weighted like the loss."""

    loss: float
    """Total loss (policy term + β·KL)."""
    policy_loss: float
    """The clipped surrogate term alone."""
    kl: float
    """Mean KL_k3 to the reference policy (0 when no reference log-probs were given)."""
    beta: float
    """KL coefficient used."""
    ratio_mean: float
    """Mean importance weight (sequence-level for GSPO); exactly 1 with one update per rollout batch."""
    clip_low: float
    """Fraction where the weight fell below 1 − ε_low with a negative advantage (the clip is binding)."""
    clip_high: float
    """Fraction where the weight rose above 1 + ε_high with a positive advantage (the clip is binding)."""

    @classmethod
    def mean(cls, stats: list[LossStats]) -> LossStats:
        """Field-wise mean of several evaluations (a step's micro-batches)."""
        return cls(**{name: sum(getattr(s, name) for s in stats) / len(stats) for name in vars(stats[0])})

    def log(self, prefix: str) -> dict[str, float]:
        """Flat ``{"<prefix>/<field>": value}`` for ``LightningModule.log_dict``."""
        return {f"{prefix}/{name}": value for name, value in vars(self).items()}


class PolicyLoss(nn.Module, metaclass=ABCMeta):
    """Clipped surrogate + β·KL_k3, mean over tokens then trajectories. Subclasses choose the importance weight."""

    def __init__(self, epsilon_low: float = 3e-4, epsilon_high: float = 4e-4) -> None:
        super().__init__()
        if not 0.0 < epsilon_low < 1.0 or epsilon_high <= 0.0:
            raise ValueError(f"need 0 < epsilon_low < 1 and epsilon_high > 0, got {epsilon_low}, {epsilon_high}")
        self.epsilon_low = epsilon_low
        self.epsilon_high = epsilon_high

    @abstractmethod
    def log_weights(self, log_ratio: Tensor, mask: Tensor) -> Tensor:
        """Log importance weights from per-token log ratios ``[N, L]`` → ``[N, L]`` or ``[N, 1]``."""

    def forward(
        self,
        logprobs: Tensor,
        old_logprobs: Tensor,
        advantages: Tensor,
        mask: Tensor,
        ref_logprobs: Tensor | None = None,
        beta: float = 0.0,
    ) -> tuple[Tensor, LossStats]:
        """Loss of one (micro-)batch of trajectories.

        Args:
            logprobs: ``[N, L]`` current policy log-probs of each token (with grad), temperature-scaled.
            old_logprobs: ``[N, L]`` log-probs of the policy that sampled the tokens.
            advantages: ``[N]`` one advantage per trajectory, or ``[N, L]`` one per token.
            mask: ``[N, L]`` bool, True exactly on model-generated tokens.
            ref_logprobs: ``[N, L]`` reference policy log-probs, or None (no KL term).
            beta: KL coefficient.

        Returns:
            The scalar loss and its detached :class:`LossStats`.
        """
        mask = mask.bool()
        log_ratio = torch.where(mask, logprobs - old_logprobs, torch.zeros_like(logprobs))
        weight = torch.exp(self.log_weights(log_ratio, mask))
        adv = advantages.to(logprobs.dtype)
        adv = adv.unsqueeze(-1) if adv.dim() == 1 else adv  # [N, 1] or [N, L]
        clipped = weight.clamp(1.0 - self.epsilon_low, 1.0 + self.epsilon_high)
        per_token = -torch.minimum(weight * adv, clipped * adv)
        policy_loss = masked_trajectory_mean(per_token, mask)
        if ref_logprobs is not None:
            delta = torch.where(mask, ref_logprobs - logprobs, torch.zeros_like(logprobs))
            kl = masked_trajectory_mean(torch.exp(delta) - delta - 1.0, mask)
        else:
            kl = logprobs.new_zeros(())
        loss = policy_loss + beta * kl
        with torch.no_grad():
            w, adv = weight.expand_as(logprobs), adv.expand_as(logprobs)
            low = ((w < 1.0 - self.epsilon_low) & (adv < 0)).float()
            high = ((w > 1.0 + self.epsilon_high) & (adv > 0)).float()
            stats = LossStats(
                loss=loss.item(),
                policy_loss=policy_loss.item(),
                kl=kl.item(),
                beta=float(beta),
                ratio_mean=masked_trajectory_mean(w, mask).item(),
                clip_low=masked_trajectory_mean(low, mask).item(),
                clip_high=masked_trajectory_mean(high, mask).item(),
            )
        return loss, stats


class GSPOLoss(PolicyLoss):
    """Sequence-level importance sampling: log s_i = mean over the trajectory's model tokens of the log ratio, in the
    token form (module docstring)."""

    def log_weights(self, log_ratio: Tensor, mask: Tensor) -> Tensor:
        """``[N, L]`` → ``[N, L]``: the value log s_i on every token, the gradient of token t's own log-prob."""
        sequence = (log_ratio.sum(-1) / mask.sum(-1).clamp(min=1)).unsqueeze(-1)
        return sequence.detach() + log_ratio - log_ratio.detach()


class GRPOLoss(PolicyLoss):
    """Token-level importance sampling (PPO/GRPO): one ratio per token."""

    def log_weights(self, log_ratio: Tensor, mask: Tensor) -> Tensor:
        """``[N, L]`` → ``[N, L]``."""
        return log_ratio


LOSSES: dict[str, type[PolicyLoss]] = {"gspo": GSPOLoss, "grpo": GRPOLoss}
"""Loss variants by config name."""


def make_loss(name: str, epsilon_low: float, epsilon_high: float) -> PolicyLoss:
    """Build the loss variant ``name`` (a key of :data:`LOSSES`)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    return LOSSES[name](epsilon_low=epsilon_low, epsilon_high=epsilon_high)
