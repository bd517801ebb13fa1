"""BATE: eq. 2 and 3 worked by hand for one image, the batch tool rate, degenerate inputs and properties."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tooliqa_rewards import BATEConfig, RewardInputError, batch_tool_rate, bate_reward

from .helpers import assert_near, phi, sigmoid, t64

PROPS = settings(max_examples=30, derandomize=True, deadline=None)

# One image, G = 4: trajectories 0, 1 used a tool successfully, 2, 3 are tool-free. s = their rank rewards.
S = [0.9, 0.6, 0.7, 0.5]
USED = torch.tensor([[True, True, False, False]])
FREE = torch.tensor([[False, False, True, True]])
ALL = torch.ones(1, 4, dtype=torch.bool)


def base(s_t: float) -> float:
    """Eq. 2 with c = 0.5, τ = 0.1: c · mean over the tool-free n of sqrt(Φ((s_t − s_n)/τ))."""
    return 0.5 * (math.sqrt(phi((s_t - 0.7) / 0.1)) + math.sqrt(phi((s_t - 0.5) / 0.1))) / 2


# Eq. 3 with λ = 0.2, ρ̂ = 0.5, w = 0.05, w′ = 0.02, band [0.35, 0.65], threefold strength (1 + 2σ(·)).
EXPECTED = {
    0.3: [base(s) + 0.2 * math.tanh(0.2 / 0.1) * (1 + 2 * sigmoid(0.05 / 0.02)) * s for s in S[:2]],
    0.5: [base(s) for s in S[:2]],
    0.6: [base(s) - 0.2 * math.tanh(0.1 / 0.1) * (1 + 2 * sigmoid(-0.05 / 0.02)) for s in S[:2]],
    0.8: [base(s) - 0.2 * math.tanh(0.3 / 0.1) * (1 + 2 * sigmoid(0.15 / 0.02)) for s in S[:2]],
}


@pytest.mark.parametrize("rho", sorted(EXPECTED))
def test_one_image_two_tool_two_tool_free_with_rho_given(rho):
    reward, used_rho = bate_reward(t64([S]), USED, FREE, ALL, BATEConfig(), rho=rho)
    assert used_rho == rho
    assert_near(reward, t64([EXPECTED[rho] + [0.0, 0.0]]), atol=1e-12)


def test_hand_numbers():
    # Φ(2) = 0.977250, Φ(4) = 0.999968: base(0.9) = 0.25 · (0.988560 + 0.999984) = 0.497136.
    assert base(0.9) == pytest.approx(0.497136, abs=2e-6)
    # ρ = 0.8: tanh(3) = 0.995055, σ(7.5) = 0.999447 → penalty 0.2 · 0.995055 · 2.998894 = 0.596813.
    assert base(0.9) - EXPECTED[0.8][0] == pytest.approx(0.596813, abs=2e-6)


@pytest.mark.parametrize("rho", sorted(EXPECTED))
def test_rho_from_the_batch_composition(rho):
    """The same image as row 0 of a 5 × 4 batch whose other rows make the batch tool rate exactly ρ."""
    n_tool = round(rho * 20) - 2  # successful-tool trajectories needed in rows 1-4
    used = torch.zeros(5, 4, dtype=torch.bool)
    used[0] = USED[0]
    used.view(-1)[4 : 4 + n_tool] = True
    free = ~used
    scores = torch.full((5, 4), 0.5, dtype=torch.float64)
    scores[0] = t64(S)
    reward, got_rho = bate_reward(scores, used, free, torch.ones(5, 4, dtype=torch.bool))
    assert got_rho == pytest.approx(rho, abs=1e-12)
    assert_near(reward[0], t64(EXPECTED[rho] + [0.0, 0.0]), atol=1e-12)


def test_batch_tool_rate_counts_valid_trajectories_only():
    used = torch.tensor([[True, True, False, False], [True, False, False, False]])
    valid = torch.tensor([[True, False, True, True], [True, True, True, False]])
    assert batch_tool_rate(used, valid) == pytest.approx(2 / 6)
    assert batch_tool_rate(used, torch.zeros_like(valid)) == 0.0


def test_rho_from_a_larger_batch_reaches_a_shard():
    big_used = torch.zeros(10, 4, dtype=torch.bool)
    big_used.view(-1)[:12] = True  # 12 of 40 → ρ = 0.3
    rho = batch_tool_rate(big_used, torch.ones(10, 4, dtype=torch.bool))
    reward, _ = bate_reward(t64([S]), USED, FREE, ALL, rho=rho)
    assert_near(reward, t64([EXPECTED[0.3] + [0.0, 0.0]]), atol=1e-12)


def test_no_tool_free_sibling_gives_c_sqrt_half_and_centering_subtracts_it():
    used = torch.tensor([[True, False, False, False]])
    free = torch.zeros(1, 4, dtype=torch.bool)  # 1-3 failed all their calls: in neither set
    reward, _ = bate_reward(t64([S]), used, free, ALL, rho=0.5)
    assert_near(reward, t64([[0.5 * math.sqrt(0.5), 0, 0, 0]]), atol=1e-12)
    centered, _ = bate_reward(t64([S]), USED, FREE, ALL, BATEConfig(center=True), rho=0.5)
    assert_near(centered, t64([[base(0.9) - 0.5 * math.sqrt(0.5), base(0.6) - 0.5 * math.sqrt(0.5), 0, 0]]), atol=1e-12)


def test_invalid_trajectories_are_neither_tool_nor_tool_free():
    valid = torch.tensor([[True, False, True, False]])  # tool 1 and tool-free 3 have no valid score
    reward, rho = bate_reward(t64([S]), USED, FREE, valid)
    assert rho == 0.5
    expected = 0.5 * math.sqrt(phi((0.9 - 0.7) / 0.1))
    assert_near(reward, t64([[expected, 0, 0, 0]]), atol=1e-12)


@pytest.mark.parametrize(
    ("used", "free", "valid", "scores"),
    [
        (torch.zeros(3, 4, dtype=torch.bool), torch.ones(3, 4, dtype=torch.bool), None, None),  # no tool trajectories
        (torch.ones(3, 4, dtype=torch.bool), torch.zeros(3, 4, dtype=torch.bool), None, None),  # only tool
        (
            torch.ones(3, 4, dtype=torch.bool),
            torch.zeros(3, 4, dtype=torch.bool),
            torch.zeros(3, 4, dtype=torch.bool),
            None,
        ),
        (torch.ones(1, 1, dtype=torch.bool), torch.zeros(1, 1, dtype=torch.bool), None, None),  # B = G = 1
        (torch.eye(3, 4, dtype=torch.bool), ~torch.eye(3, 4, dtype=torch.bool), None, torch.full((3, 4), float("nan"))),
    ],
)
def test_degenerate_inputs_give_finite_rewards(used, free, valid, scores):
    valid = torch.ones_like(used) if valid is None else valid
    scores = torch.rand(used.shape) if scores is None else scores
    reward, rho = bate_reward(scores, used, free, valid)
    assert torch.isfinite(reward).all() and 0.0 <= rho <= 1.0
    assert (reward[~(used & valid)] == 0).all()


def test_bad_inputs_raise_a_named_error():
    with pytest.raises(RewardInputError, match="rho must be in"):
        bate_reward(t64([S]), USED, FREE, ALL, rho=1.5)
    with pytest.raises(RewardInputError, match=r"tool_free must have shape \[1, 4\]"):
        bate_reward(t64([S]), USED, FREE[:, :3], ALL)
    with pytest.raises(ValueError, match="BATEConfig.temperature"):
        BATEConfig(temperature=0.0)
    with pytest.raises(ValueError, match="band_low"):
        BATEConfig(band_low=0.6)


# ---- properties --------------------------------------------------------------------------------------------------

groups = st.integers(1, 3).flatmap(
    lambda b: st.tuples(
        st.lists(st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4), min_size=b, max_size=b),
        st.lists(st.lists(st.sampled_from("TNF"), min_size=4, max_size=4), min_size=b, max_size=b),  # tool/free/failed
    )
)


def unpack(group):
    scores, kinds = t64(group[0]), group[1]
    used = torch.tensor([[k == "T" for k in row] for row in kinds])
    free = torch.tensor([[k == "N" for k in row] for row in kinds])
    return scores, used, free, torch.ones_like(used)


@PROPS
@given(groups, st.floats(0.0, 1.0))
def test_zero_for_tool_free_and_failed_only(group, rho):
    scores, used, free, valid = unpack(group)
    reward, _ = bate_reward(scores, used, free, valid, rho=rho)
    assert (reward[~used] == 0).all()


@PROPS
@given(groups, st.sampled_from([0.35, 0.5, 0.65]))
def test_continuous_in_rho_at_the_knots(group, knot):
    scores, used, free, valid = unpack(group)
    below, _ = bate_reward(scores, used, free, valid, rho=knot - 1e-7)
    at, _ = bate_reward(scores, used, free, valid, rho=knot)
    above, _ = bate_reward(scores, used, free, valid, rho=knot + 1e-7)
    # slopes in ρ are at most λ · (k − 1) · σ′ / w′ + λ · k / 2w ≈ 11: a 1e-7 step moves R by < 2e-6
    assert (below - at).abs().max() < 2e-6 and (above - at).abs().max() < 2e-6


@PROPS
@given(groups)
def test_non_increasing_in_rho(group):
    scores, used, free, valid = unpack(group)
    rewards = [bate_reward(scores, used, free, valid, rho=r)[0] for r in torch.linspace(0, 1, 41).tolist()]
    for lower, higher in zip(rewards, rewards[1:]):
        assert (higher <= lower + 1e-12).all()


@PROPS
@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=4), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_larger_for_a_tool_trajectory_that_beats_its_tool_free_siblings(free_scores, margin, rho):
    """Two tool trajectories of one image, one above every tool-free sibling, one below: the winner gets more."""
    lo, hi = min(free_scores), max(free_scores)
    scores = t64([[hi + 0.01 + margin, lo - 0.01 - margin, *free_scores]])
    g = scores.shape[1]
    used = torch.tensor([[True, True] + [False] * (g - 2)])
    reward, _ = bate_reward(scores, used, ~used, torch.ones(1, g, dtype=torch.bool), rho=rho)
    assert reward[0, 0] > reward[0, 1]
    assert reward[0, 0] > bate_reward(scores, used, ~used, torch.ones(1, g, dtype=torch.bool), rho=1.0)[0][0, 1]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    reward, rho = bate_reward(t64([S]).cuda(), USED.cuda(), FREE.cuda(), ALL.cuda())
    assert reward.is_cuda and rho == 0.5
    assert_near(reward.cpu(), t64([EXPECTED[0.5] + [0.0, 0.0]]), atol=1e-12)
