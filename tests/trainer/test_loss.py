"""GSPO/GRPO loss, advantages and schedules against plain loop-over-sequences references written here."""

from __future__ import annotations

import math

import pytest
import torch

from tooliqa_trainer.advantages import grpo_advantages, make_advantage, rloo_advantages
from tooliqa_trainer.loss import GRPOLoss, GSPOLoss, make_loss
from tooliqa_trainer.schedule import PiecewiseConstant, constant_with_warmup, make_lr_lambda


def _random_batch(seed: int, n: int = 6, length: int = 9):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(n, length, generator=g, dtype=torch.float64) * 3
    # Second inner update: the policy moved away from the sampler, far enough that clipping binds.
    new = old + 0.05 * torch.randn(n, length, generator=g, dtype=torch.float64)
    ref = old + 0.1 * torch.randn(n, length, generator=g, dtype=torch.float64)
    mask = torch.rand(n, length, generator=g) < 0.6
    mask[:, 0] = False  # prompt position
    mask[0, :] = False
    mask[0, 3] = True  # a one-token trajectory
    adv = torch.randn(n, generator=g, dtype=torch.float64)
    return new.requires_grad_(True), old, ref, mask, adv


def _reference_loss(new, old, ref, mask, adv, eps_low, eps_high, beta, sequence_level):
    """Loop over trajectories and tokens, exactly as SPEC §5 states it."""
    total = 0.0
    for i in range(new.shape[0]):
        tokens = [t for t in range(new.shape[1]) if mask[i, t]]
        if sequence_level:
            s = torch.exp(sum(new[i, t] - old[i, t] for t in tokens) / len(tokens))
        per_token = []
        for t in tokens:
            w = s if sequence_level else torch.exp(new[i, t] - old[i, t])
            surrogate = -torch.minimum(w * adv[i], torch.clamp(w, 1 - eps_low, 1 + eps_high) * adv[i])
            d = ref[i, t] - new[i, t]
            per_token.append(surrogate + beta * (torch.exp(d) - d - 1))
        total = total + sum(per_token) / len(tokens)
    return total / new.shape[0]


@pytest.mark.parametrize("name,sequence_level,eps", [("gspo", True, (3e-3, 4e-3)), ("grpo", False, (0.02, 0.03))])
def test_loss_matches_loop_reference_with_clipping_and_kl(name, sequence_level, eps):
    new, old, ref, mask, adv = _random_batch(0)
    loss_fn = make_loss(name, *eps)
    loss, stats = loss_fn(new, old, adv, mask, ref_logprobs=ref, beta=0.04)
    (grad,) = torch.autograd.grad(loss, new)

    new_ref = new.detach().clone().requires_grad_(True)
    expected = _reference_loss(new_ref, old, ref, mask, adv, *eps, beta=0.04, sequence_level=sequence_level)
    (expected_grad,) = torch.autograd.grad(expected, new_ref)

    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(grad, expected_grad)
    assert (grad[~mask] == 0).all(), "masked (prompt / tool) tokens must not get gradient"
    assert stats.clip_low + stats.clip_high > 0, "the test must exercise an active clip"
    assert stats.kl > 0 and stats.beta == 0.04


def test_gspo_clip_fractions_and_ratio_by_hand():
    new, old, ref, mask, adv = _random_batch(1)
    eps_low, eps_high = 3e-3, 4e-3
    _, stats = GSPOLoss(eps_low, eps_high)(new, old, adv, mask, ref_logprobs=ref, beta=0.0)
    ratios = [math.exp((new[i] - old[i])[mask[i]].mean().item()) for i in range(len(adv))]
    low = [r < 1 - eps_low and a < 0 for r, a in zip(ratios, adv.tolist())]
    high = [r > 1 + eps_high and a > 0 for r, a in zip(ratios, adv.tolist())]
    assert stats.ratio_mean == pytest.approx(sum(ratios) / len(ratios))
    assert stats.clip_low == pytest.approx(sum(low) / len(low))
    assert stats.clip_high == pytest.approx(sum(high) / len(high))


def test_on_policy_gspo_equals_grpo_and_ratio_is_one():
    new, _, ref, mask, adv = _random_batch(2)
    old = new.detach()
    gspo, s1 = GSPOLoss()(new, old, adv, mask, ref_logprobs=ref, beta=0.06)
    (g1,) = torch.autograd.grad(gspo, new)
    grpo, s2 = GRPOLoss()(new, old, adv, mask, ref_logprobs=ref, beta=0.06)
    (g2,) = torch.autograd.grad(grpo, new)
    torch.testing.assert_close(gspo, grpo)
    torch.testing.assert_close(g1, g2)
    assert s1.ratio_mean == 1.0 and s1.clip_low == 0.0 and s1.clip_high == 0.0


def test_loss_rejects_bad_config():
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss("ppo-ish", 0.2, 0.2)
    with pytest.raises(ValueError, match="epsilon"):
        GSPOLoss(epsilon_low=1.5)


def test_grpo_advantages_match_loop_reference():
    rewards = torch.tensor([[1.0, 2.0, 3.0, 6.0], [0.5, 0.5, 0.5, 0.5], [0.0, 1.0, 0.0, 1.0]])
    out = grpo_advantages(rewards)
    for b, row in enumerate(rewards.tolist()):
        mean = sum(row) / 4
        std = math.sqrt(sum((r - mean) ** 2 for r in row) / 3)
        for g, r in enumerate(row):
            assert out[b, g].item() == pytest.approx((r - mean) / (std + 1e-4), rel=1e-5)
    assert (out[1] == 0).all(), "an all-equal group carries no signal"


def test_rloo_and_registry():
    rewards = torch.tensor([[1.0, 2.0, 6.0]])
    torch.testing.assert_close(rloo_advantages(rewards), torch.tensor([[1 - 4.0, 2 - 3.5, 6 - 1.5]]))
    assert make_advantage("grpo") is grpo_advantages
    with pytest.raises(ValueError, match="G ≥ 2"):
        grpo_advantages(torch.ones(3, 1))
    with pytest.raises(ValueError, match="unknown advantage"):
        make_advantage("gae")


def test_kl_schedule_switches_exactly_at_configured_step():
    paper = PiecewiseConstant(((0, 0.04), (340, 0.06)))
    assert [paper(s) for s in (0, 1, 339, 340, 679)] == [0.04, 0.04, 0.04, 0.06, 0.06]
    assert paper.max_value == 0.06
    with pytest.raises(ValueError, match="step 0"):
        PiecewiseConstant(((5, 0.1),))
    with pytest.raises(ValueError, match="increase"):
        PiecewiseConstant(((0, 0.1), (3, 0.2), (3, 0.3)))


def test_lr_warmup_then_constant():
    # 680 steps × 0.05 → 34 warmup steps (ceil), as transformers computes it.
    assert constant_with_warmup(0, 680, 0.05) == 0.0
    assert constant_with_warmup(17, 680, 0.05) == pytest.approx(0.5)
    assert constant_with_warmup(34, 680, 0.05) == 1.0 == constant_with_warmup(679, 680, 0.05)
    assert make_lr_lambda("constant_with_warmup", 10, 0.0)(0) == 1.0
    cosine = make_lr_lambda("cosine_with_warmup", 10, 0.0)
    assert cosine(0) == 1.0 and cosine(10) == pytest.approx(0.0)
