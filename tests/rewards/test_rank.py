"""Rank reward: hand-computed cases from SPEC §4's formulas, degenerate inputs and properties."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tooliqa_rewards import RewardInputError, rank_reward

from .helpers import EPS, assert_near, fid, ones, phi, t64

PROPS = settings(max_examples=40, derandomize=True, deadline=None)


# B = 3, G = 2. Image 0: [4, 3] (μ 3.5, σ² 0.5), image 1: [2, 3] (μ 2.5, σ² 0.5), image 2: [1.5, 1.5] (μ 1.5, σ² 0).
SCORES = [[4.0, 3.0], [2.0, 3.0], [1.5, 1.5]]
D01 = math.sqrt(0.5 + 0.5 + EPS)  # sqrt(σ²_0 + σ²_1 + ε)
D02 = math.sqrt(0.5 + 0.0 + EPS)
D12 = math.sqrt(0.5 + 0.0 + EPS)


def test_three_images_two_samples_without_ties():
    mos = [3.0, 2.0, 1.0]  # 0 > 1 > 2
    expected = [
        [(fid(phi((4 - 2.5) / D01), 1) + fid(phi((4 - 1.5) / D02), 1)) / 2,
         (fid(phi((3 - 2.5) / D01), 1) + fid(phi((3 - 1.5) / D02), 1)) / 2],
        [(fid(phi((2 - 3.5) / D01), 0) + fid(phi((2 - 1.5) / D12), 1)) / 2,
         (fid(phi((3 - 3.5) / D01), 0) + fid(phi((3 - 1.5) / D12), 1)) / 2],
        [(fid(phi((1.5 - 3.5) / D02), 0) + fid(phi((1.5 - 2.5) / D12), 0)) / 2] * 2,
    ]  # fmt: skip
    got = rank_reward(t64(SCORES), t64(mos), ones(3, 2))
    assert_near(got, t64(expected), atol=1e-12)
    # Spot value, numbers worked by hand: Φ(1.5/1.0000005) = 0.933193, Φ(2.5/0.7071075) = 0.999797,
    # (sqrt(0.933194) + 0.001 + sqrt(0.999798) + 0.001) / 2 = (0.966020 + 0.999899) / 2 + 0.001 = 0.983960.
    assert got[0, 0].item() == pytest.approx(0.983960, abs=2e-6)


def test_three_images_two_samples_with_a_tie():
    mos = [2.0, 2.0, 1.0]  # images 0 and 1 tie: g = 0.5 both ways
    expected = [
        [(fid(phi((4 - 2.5) / D01), 0.5) + fid(phi((4 - 1.5) / D02), 1)) / 2,
         (fid(phi((3 - 2.5) / D01), 0.5) + fid(phi((3 - 1.5) / D02), 1)) / 2],
        [(fid(phi((2 - 3.5) / D01), 0.5) + fid(phi((2 - 1.5) / D12), 1)) / 2,
         (fid(phi((3 - 3.5) / D01), 0.5) + fid(phi((3 - 1.5) / D12), 1)) / 2],
        [(fid(phi((1.5 - 3.5) / D02), 0) + fid(phi((1.5 - 2.5) / D12), 0)) / 2] * 2,
    ]  # fmt: skip
    got = rank_reward(t64(SCORES), t64(mos), ones(3, 2))
    assert_near(got, t64(expected), atol=1e-12)
    # A tie at p = Φ(0.5) = 0.691462: sqrt(0.345731 + ε) + sqrt(0.154269 + ε) = 0.587990 + 0.392773.
    assert fid(phi(0.5 / D01), 0.5) == pytest.approx(0.980763, abs=2e-6)


def test_float32_matches_float64():
    mos = t64([3.0, 2.0, 1.0])
    got32 = rank_reward(t64(SCORES).float(), mos.float(), ones(3, 2))
    assert got32.dtype == torch.float32
    assert_near(got32.double(), rank_reward(t64(SCORES), mos, ones(3, 2)), atol=1e-6)


def test_invalid_samples_are_left_out_and_get_zero():
    # Image 1's second sample is invalid: μ_1 = 2, σ²_1 = 0 (one valid sample), and it gets 0.
    valid = torch.tensor([[True, True], [True, False], [True, True]])
    scores = t64([[4.0, 3.0], [2.0, float("nan")], [1.5, 1.5]])
    got = rank_reward(scores, t64([3.0, 2.0, 1.0]), valid)
    d01, d12 = math.sqrt(0.5 + EPS), math.sqrt(EPS)
    assert got[1, 1].item() == 0.0
    assert got[1, 0].item() == pytest.approx(
        (fid(phi((2 - 3.5) / d01), 0) + fid(phi((2 - 1.5) / d12), 1)) / 2, abs=1e-12
    )
    assert got[0, 0].item() == pytest.approx((fid(phi((4 - 2) / d01), 1) + fid(phi((4 - 1.5) / D02), 1)) / 2, abs=1e-12)


def test_groups_restrict_comparisons():
    # Images 0 and 2 form one group, image 1 is alone: it has no partner and gets 0.
    got = rank_reward(t64(SCORES), t64([3.0, 2.0, 1.0]), ones(3, 2), torch.tensor([0, 1, 0]))
    assert got[1].tolist() == [0.0, 0.0]
    assert got[0, 0].item() == pytest.approx(fid(phi((4 - 1.5) / D02), 1), abs=1e-12)
    assert got[2, 0].item() == pytest.approx(fid(phi((1.5 - 3.5) / D02), 0), abs=1e-12)


def test_an_image_without_valid_samples_is_no_partner():
    valid = torch.tensor([[True, True], [False, False], [True, True]])
    got = rank_reward(t64(SCORES), t64([3.0, 2.0, 1.0]), valid)
    assert got[1].tolist() == [0.0, 0.0]
    assert got[0, 0].item() == pytest.approx(fid(phi((4 - 1.5) / D02), 1), abs=1e-12)


def test_non_finite_mos_takes_no_part():
    got = rank_reward(t64(SCORES), t64([3.0, float("nan"), 1.0]), ones(3, 2))
    assert got[1].tolist() == [0.0, 0.0]
    assert got[0, 0].item() == pytest.approx(fid(phi((4 - 1.5) / D02), 1), abs=1e-12)


def test_single_sample_groups_use_zero_variance():
    # G = 1: σ² := 0 for every image, so the denominator is sqrt(ε) and Φ saturates.
    got = rank_reward(t64([[3.0], [2.0]]), t64([1.0, 2.0]), ones(2, 1))
    assert got[0, 0].item() == pytest.approx(fid(phi(1.0 / math.sqrt(EPS)), 0), abs=1e-12)
    assert got[1, 0].item() == pytest.approx(fid(phi(-1.0 / math.sqrt(EPS)), 1), abs=1e-12)


@pytest.mark.parametrize(
    ("scores", "mos", "valid"),
    [
        (torch.full((4, 3), 3.0), torch.rand(4), torch.ones(4, 3, dtype=torch.bool)),  # all scores equal
        (torch.rand(5, 1) * 4 + 1, torch.rand(5), torch.ones(5, 1, dtype=torch.bool)),  # G = 1
        (torch.rand(1, 4) * 4 + 1, torch.rand(1), torch.ones(1, 4, dtype=torch.bool)),  # B = 1
        (torch.full((3, 4), float("nan")), torch.rand(3), torch.ones(3, 4, dtype=torch.bool)),  # NaN scores
        (torch.tensor([[float("inf"), 2.0], [float("-inf"), 1.0]]), torch.rand(2), torch.ones(2, 2, dtype=torch.bool)),
        (torch.rand(3, 4), torch.rand(3), torch.zeros(3, 4, dtype=torch.bool)),  # all invalid
        (torch.rand(3, 4), torch.ones(3), torch.ones(3, 4, dtype=torch.bool)),  # all MOS tied
    ],
)
def test_degenerate_inputs_give_finite_rewards(scores, mos, valid):
    got = rank_reward(scores, mos, valid)
    assert got.shape == scores.shape and torch.isfinite(got).all()
    assert (got[~(valid & torch.isfinite(scores))] == 0).all()


def test_b1_and_all_invalid_are_zero():
    assert rank_reward(torch.rand(1, 4), torch.rand(1), ones(1, 4)).eq(0).all()
    assert rank_reward(torch.rand(3, 2), torch.rand(3), torch.zeros(3, 2, dtype=torch.bool)).eq(0).all()


def test_blocks_do_not_change_the_result():
    gen = torch.Generator().manual_seed(0)
    scores, mos = (
        torch.rand(37, 5, generator=gen, dtype=torch.float64) * 4 + 1,
        torch.randint(0, 6, (37,), generator=gen),
    )
    valid = torch.rand(37, 5, generator=gen) > 0.1
    whole = rank_reward(scores, mos.double(), valid)
    for block in (1, 7 * 5 * 37, 1 << 30):
        assert_near(rank_reward(scores, mos.double(), valid, block_elements=block), whole, atol=1e-14)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mos": torch.rand(4)}, r"mos must have shape \[3\]"),
        ({"valid": torch.ones(3, 2)}, "valid must be a bool tensor"),
        ({"scores": torch.rand(6)}, "must be 2-D"),
        ({"groups": torch.rand(3)}, "groups must be a int tensor"),
    ],
)
def test_bad_inputs_raise_a_named_error(kwargs, message):
    args = {"scores": torch.rand(3, 2), "mos": torch.rand(3), "valid": ones(3, 2), "groups": None} | kwargs
    with pytest.raises(RewardInputError, match=message):
        rank_reward(**args)


# ---- properties --------------------------------------------------------------------------------------------------

batches = st.integers(2, 5).flatmap(
    lambda b: st.tuples(
        st.lists(st.lists(st.floats(1.0, 5.0), min_size=3, max_size=3), min_size=b, max_size=b),
        st.lists(st.integers(0, 9), min_size=b, max_size=b),
    )
)
TRANSFORMS = [lambda m: 3.0 * m - 7.0, torch.exp, lambda m: m**3, torch.atan, lambda m: torch.log1p(m) * 0.01]


@PROPS
@given(batches, st.sampled_from(range(len(TRANSFORMS))))
def test_invariant_to_increasing_transforms_of_mos(batch, which):
    scores, mos = t64(batch[0]), t64(batch[1])
    before = rank_reward(scores, mos, ones(*scores.shape))
    after = rank_reward(scores, TRANSFORMS[which](mos), ones(*scores.shape))
    assert torch.equal(before, after)


@PROPS
@given(batches, st.integers(0, 2), st.integers(0, 2))
def test_moving_a_sample_toward_the_correct_order_never_lowers_its_reward(batch, k, other):
    """Image i strictly best (worst) in the batch: giving sample k a higher (lower) score of its own group (a swap
    keeps every image's μ and σ²) never lowers its reward; nor does shifting i's whole group that way."""
    scores, mos = t64(batch[0]), t64(batch[1])
    for i, up in ((int(mos.argmax()), True), (int(mos.argmin()), False)):
        if (mos == mos[i]).sum() > 1:
            continue  # "the correct order" needs i strictly above (below) every partner
        before = rank_reward(scores, mos, ones(*scores.shape))[i]
        better = scores[i, other] > scores[i, k] if up else scores[i, other] < scores[i, k]
        if better:
            swapped = scores.clone()
            swapped[i, [k, other]] = scores[i, [other, k]]
            assert rank_reward(swapped, mos, ones(*scores.shape))[i, k] >= before[k] - 1e-12
        shifted = scores.clone()
        shifted[i] += 0.5 if up else -0.5
        assert (rank_reward(shifted, mos, ones(*scores.shape))[i] >= before - 1e-12).all()


def test_raising_one_sample_alone_can_lower_it_documented():
    """The exact VisualQuality-R1 formula puts the sample's own group variance in the denominator, so raising one
    sample of the best image also widens σ²_i and can lower its (saturated) reward: a property of the formula."""
    mos = t64([0.54, 0.46])
    before = rank_reward(t64([[4.9, 4.7], [1.7, 2.1]]), mos, ones(2, 2))[0, 0]
    after = rank_reward(t64([[5.9, 4.7], [1.7, 2.1]]), mos, ones(2, 2))[0, 0]
    d_before, d_after = math.sqrt(0.02 + 0.08 + EPS), math.sqrt(0.72 + 0.08 + EPS)  # σ²_0: 0.02 → 0.72
    assert before.item() == pytest.approx(fid(phi((4.9 - 1.9) / d_before), 1), abs=1e-12)
    assert after.item() == pytest.approx(fid(phi((5.9 - 1.9) / d_after), 1), abs=1e-12)
    assert after < before


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(1)
    scores, mos = torch.rand(64, 8, generator=gen) * 4 + 1, torch.randint(0, 20, (64,), generator=gen).float()
    valid = torch.rand(64, 8, generator=gen) > 0.1
    cpu = rank_reward(scores, mos, valid)
    gpu = rank_reward(scores.cuda(), mos.cuda(), valid.cuda())
    assert gpu.is_cuda
    assert_near(gpu.cpu(), cpu, atol=1e-5)
