"""compute_rewards: the weighted total over the registry, the stats record, degenerate batches, input errors."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from tooliqa_rewards import (
    REWARDS,
    FormatRecord,
    RewardConfig,
    RewardInputError,
    RewardInputs,
    RewardWeights,
    compute_rewards,
)

from .helpers import ANSWER, CALL, GOOD, assert_near, fid, phi, t64


def make_inputs(b: int = 2, g: int = 2, **overrides) -> RewardInputs:
    """Image 0 better than image 1; trajectory 0 of each image used a tool, trajectory 1 did not."""
    gen = torch.Generator().manual_seed(b * 100 + g)
    used = torch.zeros(b, g, dtype=torch.bool)
    used[:, 0] = True
    fields = {
        "scores": torch.rand(b, g, generator=gen, dtype=torch.float64) * 4 + 1,
        "mos": torch.linspace(5, 1, b, dtype=torch.float64),
        "valid": torch.ones(b, g, dtype=torch.bool),
        "used_tool": used,
        "tool_free": ~used,
        "n_successful_calls": used.long(),
        "n_failed_calls": torch.zeros(b, g, dtype=torch.long),
        "format_records": tuple(
            GOOD if u else dataclasses.replace(GOOD, action_texts=(ANSWER,), tool_calls_valid=())
            for u in used.flatten().tolist()
        ),
    }
    return RewardInputs(**(fields | overrides))


def test_two_by_two_batch_by_hand():
    # Image 0 (MOS 5): tool 4.0, tool-free 3.0; image 1 (MOS 1): tool 2.0 (two calls, one failed), tool-free 2.5.
    used = torch.tensor([[True, False], [True, False]])
    records = (GOOD, dataclasses.replace(GOOD, action_texts=(ANSWER,), tool_calls_valid=()))
    bad = dataclasses.replace(GOOD, action_texts=(CALL, CALL, ANSWER), tool_calls_valid=(False, True))
    inputs = make_inputs(
        scores=t64([[4.0, 3.0], [2.0, 2.5]]),
        used_tool=used,
        tool_free=~used,
        n_successful_calls=used.long(),
        n_failed_calls=torch.tensor([[0, 0], [1, 0]]),
        format_records=(records[0], records[1], bad, records[1]),
    )
    out = compute_rewards(inputs, RewardConfig(weights=RewardWeights(rank=1.0, format=0.5, bate=2.0)))
    d = math.sqrt(0.5 + 0.125 + 1e-6)  # σ²_0 = 0.5, σ²_1 = 0.125
    rank = [[fid(phi((4 - 2.25) / d), 1), fid(phi((3 - 2.25) / d), 1)],
            [fid(phi((2 - 3.5) / d), 0), fid(phi((2.5 - 3.5) / d), 0)]]  # fmt: skip
    fmt = [[1.0, 1.0], [0.0, 1.0]]
    # ρ = 2/4 = ρ̂: no shaping; one tool-free sibling each
    bate = [[0.5 * math.sqrt(phi((rank[0][0] - rank[0][1]) / 0.1)), 0.0],
            [0.5 * math.sqrt(phi((rank[1][0] - rank[1][1]) / 0.1)), 0.0]]  # fmt: skip
    total = [[r + 0.5 * f + 2.0 * b for r, f, b in zip(*rows)] for rows in zip(rank, fmt, bate)]
    assert_near(out.rank, t64(rank), atol=1e-12)
    assert_near(out.format, t64(fmt), atol=0)
    assert_near(out.bate, t64(bate), atol=1e-12)
    assert_near(out.total, t64(total), atol=1e-12)
    s = out.stats
    assert s.rho == 0.5 and s.valid_rate == 1.0
    assert s.mean_total == pytest.approx(sum(map(sum, total)) / 4, abs=1e-12)
    assert s.mean_bate == pytest.approx(sum(map(sum, bate)) / 4, abs=1e-12)
    assert s.mean_format == 0.75
    assert (s.calls_per_trajectory, s.successful_call_rate, s.failed_call_rate) == (0.75, 2 / 3, 1 / 3)
    assert dict(s.format_failure_rates)["tool_calls"] == 0.25 and out.format_result.failed_checks(2) == ("tool_calls",)
    log = s.log("train/reward")
    assert log["train/reward/rho"] == 0.5 and log["train/reward/format_fail/tool_calls"] == 0.25
    assert all(isinstance(v, float) for v in log.values()) and "rho" in s.log("")


def test_every_registered_reward_has_a_weight():
    assert tuple(REWARDS) == tuple(f.name for f in dataclasses.fields(RewardWeights))


def test_zero_weight_switches_a_component_off_but_it_is_still_reported():
    inputs = make_inputs(4, 3)
    out = compute_rewards(inputs, RewardConfig(weights=RewardWeights(bate=0.0, format=0.0)))
    assert torch.equal(out.total, out.rank)
    assert out.bate.abs().sum() > 0 and out.stats.mean_bate > 0


def test_rank_within_dataset_is_a_config_switch():
    """SPEC §4's option: with it, images are ranked only against their own dataset's images (``groups``)."""
    from tooliqa_rewards import rank_reward

    inputs = make_inputs(4, 3, groups=torch.tensor([7, 9, 7, 9]))
    across = compute_rewards(inputs)  # off by default: the ids are carried but every image is a partner
    assert torch.equal(across.rank, rank_reward(inputs.scores, inputs.mos, inputs.valid))
    within = compute_rewards(inputs, RewardConfig(rank_within_dataset=True))
    for rows in ([0, 2], [1, 3]):
        alone = rank_reward(inputs.scores[rows], inputs.mos[rows], inputs.valid[rows])
        assert_near(within.rank[rows], alone, 1e-12)
    assert not torch.equal(within.rank, across.rank)
    with pytest.raises(RewardInputError, match="rank_within_dataset needs RewardInputs.groups"):
        compute_rewards(make_inputs(4, 3), RewardConfig(rank_within_dataset=True))


def test_rho_override_reaches_bate():
    inputs = make_inputs(3, 4, rho=0.9)
    out = compute_rewards(inputs)
    assert out.stats.rho == 0.9
    assert (out.bate[inputs.used_tool] < compute_rewards(make_inputs(3, 4, rho=0.1)).bate[inputs.used_tool]).all()


@pytest.mark.parametrize(
    "overrides",
    [
        {"scores": torch.full((3, 4), 2.0, dtype=torch.float64)},  # all scores equal
        {"scores": torch.full((3, 4), float("nan"), dtype=torch.float64)},  # NaN scores
        {"valid": torch.zeros(3, 4, dtype=torch.bool)},  # all invalid
        {"used_tool": torch.zeros(3, 4, dtype=torch.bool), "tool_free": torch.ones(3, 4, dtype=torch.bool)},
        {"used_tool": torch.ones(3, 4, dtype=torch.bool), "tool_free": torch.zeros(3, 4, dtype=torch.bool)},
    ],
)
def test_degenerate_batches_give_finite_outputs(overrides):
    out = compute_rewards(make_inputs(3, 4, **overrides))
    for part in (out.total, out.rank, out.format, out.bate):
        assert part.shape == (3, 4) and torch.isfinite(part).all()
    assert all(math.isfinite(v) for v in out.stats.log().values())


@pytest.mark.parametrize(("b", "g"), [(1, 4), (3, 1), (1, 1)])
def test_tiny_batches_give_finite_outputs(b, g):
    out = compute_rewards(make_inputs(b, g))
    assert torch.isfinite(out.total).all() and out.total.shape == (b, g)


def test_input_errors_name_the_field():
    with pytest.raises(RewardInputError, match="format_records needs B·G = 4 records, got 3"):
        make_inputs(format_records=(GOOD,) * 3)
    with pytest.raises(RewardInputError, match=r"n_failed_calls must be a int tensor"):
        make_inputs(n_failed_calls=torch.zeros(2, 2))
    with pytest.raises(RewardInputError, match=r"used_tool must have shape \[2, 2\]"):
        make_inputs(used_tool=torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(RewardInputError, match="rho must be in"):
        compute_rewards(make_inputs(rho=float("nan")))
    assert isinstance(FormatRecord(None, (), (), None), FormatRecord)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    cpu_inputs = make_inputs(6, 4)
    cuda_inputs = dataclasses.replace(
        cpu_inputs,
        **{
            f.name: getattr(cpu_inputs, f.name).cuda()
            for f in dataclasses.fields(cpu_inputs)
            if isinstance(getattr(cpu_inputs, f.name), torch.Tensor)
        },
    )
    cpu, gpu = compute_rewards(cpu_inputs), compute_rewards(cuda_inputs)
    assert gpu.total.is_cuda and gpu.format.is_cuda
    assert_near(gpu.total.cpu(), cpu.total, atol=1e-10)
    assert gpu.stats.rho == cpu.stats.rho


def test_readme_example_runs(capsys):
    readme = (Path(__file__).resolve().parents[2] / "packages" / "rewards" / "README.md").read_text()
    example = readme.split("## Example\n\n```python\n", 1)[1].split("```", 1)[0]
    exec(compile(example, "README.md", "exec"), {})
    assert "train/reward/rho" in capsys.readouterr().out
