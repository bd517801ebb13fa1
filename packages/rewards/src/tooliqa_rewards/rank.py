"""VisualQuality-R1's rank reward: the Thurstone fidelity of each sampled score against every other image's group.

For image i with G sampled scores q_{i,k}, mean μ_i and unbiased variance σ²_i, and every partner image j ≠ i:

    p = Φ((q_{i,k} − μ_j) / sqrt(σ²_i + σ²_j + ε)),   g = 1 if y_i > y_j, 0 if y_i < y_j, 0.5 if y_i = y_j
    f = sqrt(p·g + ε) + sqrt((1 − p)(1 − g) + ε),     R_rank(i, k) = mean over partners j of f

For g ∈ {0, 1} the formula is f = sqrt(Φ(±z) + ε) + sqrt(ε) (1 − Φ(z) = Φ(−z)): one transcendental per element,
which is the whole cost at large B (the [B, G, B] tensor). Ties (g = 0.5) are rare and gathered apart.
"""

from __future__ import annotations

import math

import torch

from tooliqa_rewards.errors import expect_batch, float_dtype

RANK_EPS = 1e-6
"""ε of VisualQuality-R1, inside the variance sum and both square roots."""

_SQRT1_2 = math.sqrt(0.5)


def _fidelity_sum(
    q: torch.Tensor,
    mu: torch.Tensor,
    inv_sd: torch.Tensor,
    order: torch.Tensor,
    duel: torch.Tensor,
    tie: torch.Tensor | None,
    eps: float,
) -> torch.Tensor:
    """Σ over partners j of f for a block of R images: q ``[R, G]``, mu ``[B]``, the rest ``[R, B]``; → ``[R, G]``.

    ``tie`` is None when the batch has no tied pair (the usual case at small B: it saves a dozen tiny ops)."""
    # Duels: Φ(order · z) = ½ erfc(−order · z / √2), and sqrt(½ erfc + ε) = sqrt(½) · sqrt(erfc + 2ε).
    slope = order * inv_sd * -_SQRT1_2
    arg = torch.addcmul((mu * -slope)[:, None, :], q[:, :, None], slope[:, None, :])  # [R, G, B]
    arg.erfc_().add_(2 * eps).sqrt_()
    total = torch.bmm(arg, (duel.to(q.dtype) * _SQRT1_2)[:, :, None]).squeeze(-1)
    total += math.sqrt(eps) * duel.sum(1, keepdim=True).to(q.dtype)
    if tie is None:
        return total
    # Ties (g = ½): f = sqrt(p/2 + ε) + sqrt((1 − p)/2 + ε) with p/2 = ¼ erfc(−z/√2), (1 − p)/2 = ¼ erfc(z/√2).
    ti, tj = tie.nonzero(as_tuple=True)
    z = (q[ti] - mu[tj, None]) * (inv_sd[ti, tj, None] * _SQRT1_2)  # [P, G]
    return total.index_add_(0, ti, (0.25 * torch.erfc(-z) + eps).sqrt_() + (0.25 * torch.erfc(z) + eps).sqrt_())


@torch.no_grad()
def rank_reward(
    scores: torch.Tensor,
    mos: torch.Tensor,
    valid: torch.Tensor,
    groups: torch.Tensor | None = None,
    *,
    eps: float = RANK_EPS,
    block_elements: int | None = None,
) -> torch.Tensor:
    """Fidelity rank reward of every sample against the other images of the batch.

    Args:
        scores: float ``[B, G]``, the parsed final scores (NaN/inf allowed: treated as invalid).
        mos: float ``[B]``, ground truth, higher = better; only its order matters. An image with a non-finite MOS
            takes part in no comparison and all its samples get 0.
        valid: bool ``[B, G]``, True where the sample has a valid final score. Invalid samples are left out of μ/σ²
            and get 0.
        groups: optional integer ``[B]`` (e.g. dataset ids): images are compared only with images of their group.
        eps: ε in the variance sum and in both square roots.
        block_elements: the [rows, G, B] blocks of the pairwise pass hold about this many elements; None: 2^19 on
            the CPU (cache-sized; 1.5-4x faster than one block at B = 1024), 2^26 on an accelerator (fewer launches).

    Returns:
        float ``[B, G]`` rewards (float32, or float64 for float64 scores), on the scores' device.

    Degenerate cases: an image with exactly one valid sample (always so at G = 1) has σ² = 0 (the unbiased variance
    is undefined; 0 lets the other image's spread and ε set the scale). Images without a valid sample are no
    comparison partner. A sample whose image has no partner (B = 1, or alone in its group) gets 0.
    """
    groups_field = {} if groups is None else {"groups": (groups, "int", True)}
    b, g = expect_batch("rank_reward", scores, mos=(mos, "float", True), valid=(valid, "bool", False), **groups_field)
    dtype = float_dtype(scores)
    q = scores.to(dtype)
    ok = valid & ((q - q) == 0)  # finite: inf − inf and NaN − NaN are NaN (cheaper than isfinite)
    weight = ok.to(dtype)
    q = torch.where(ok, q, 0.0)  # a masked NaN would still poison the sums below (NaN · 0 = NaN)
    n = weight.sum(1)
    mu = q.sum(1) / n.clamp(min=1)
    var = ((q - mu[:, None]).square_() * weight).sum(1) / (n - 1).clamp(min=1)  # n ≤ 1 → 0
    inv_sd = torch.rsqrt(var[:, None] + var[None, :] + eps)  # [B, B]

    y = mos.to(dtype)
    partner = (n > 0) & ((y - y) == 0)
    y = torch.where(partner, y, 0.0)
    pair = partner[:, None] & partner[None, :]
    pair.fill_diagonal_(False)
    if groups is not None:
        pair &= groups[:, None] == groups[None, :]
    order = torch.sign(y[:, None] - y[None, :])  # g = (order + 1) / 2
    tie = pair & (order == 0)
    duel = pair & (order != 0)
    ties = tie if bool(tie.any()) else None
    # Memory tiling, not a per-sample loop: each block of image rows is one vectorised [rows, G, B] pass, so memory
    # stays bounded and, on the CPU, the pass stays in cache.
    if block_elements is None:
        block_elements = 1 << 19 if scores.device.type == "cpu" else 1 << 26
    rows = max(1, block_elements // (g * b))
    total = torch.cat(
        [
            _fidelity_sum(
                q[r : r + rows],
                mu,
                inv_sd[r : r + rows],
                order[r : r + rows],
                duel[r : r + rows],
                None if ties is None else ties[r : r + rows],
                eps,
            )
            for r in range(0, b, rows)
        ]
    )

    count = pair.sum(1, keepdim=True)
    return torch.where(ok & (count > 0), total / count.clamp(min=1).to(dtype), 0.0)
