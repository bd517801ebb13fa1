"""Multi-rank helpers without processes: per-rank counters from a checkpoint, and the DeepSpeed settings the module
carries into the strategy's config (the 2-process runs themselves: tests/distributed)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tooliqa_trainer.checkpoint_state import rank_rng_state, restore_rng, rng_state
from tooliqa_trainer.ranks import deepspeed_settings, every_rank, own_entry


def test_every_rank_without_a_process_group_is_this_value():
    assert every_rank(7) == [7]


def test_own_entry_picks_this_ranks_counter():
    assert own_entry([5, 9], rank=1, world_size=2) == 9
    assert own_entry(4, rank=1, world_size=2) == 4  # a checkpoint written before counters were per rank
    assert own_entry([5, 9], rank=0, world_size=4) == 9  # world size changed: the largest, no seed replayed
    assert own_entry([None, None], rank=0, world_size=4) is None
    assert own_entry(None, rank=0, world_size=1) is None


def test_deepspeed_settings_carry_the_clip_and_a_micro_batch():
    strategy = SimpleNamespace(config={"zero_optimization": {"stage": 2}})
    deepspeed_settings(SimpleNamespace(strategy=strategy), grad_clip=1.0)
    assert strategy.config["gradient_clipping"] == 1.0 and strategy.config["train_micro_batch_size_per_gpu"] == 1
    kept = SimpleNamespace(config={"gradient_clipping": 0.5, "train_micro_batch_size_per_gpu": 2})
    deepspeed_settings(SimpleNamespace(strategy=kept), grad_clip=0.5)
    assert kept.config == {"gradient_clipping": 0.5, "train_micro_batch_size_per_gpu": 2}
    with pytest.raises(ValueError, match="gradient_clipping 0.5 but model.optim.grad_clip is 1.0"):
        deepspeed_settings(SimpleNamespace(strategy=kept), grad_clip=1.0)
    deepspeed_settings(SimpleNamespace(strategy=SimpleNamespace()), grad_clip=1.0)  # not DeepSpeed: nothing to do
    deepspeed_settings(None, grad_clip=1.0)


def test_rank_rng_state_round_trips_this_ranks_generators():
    torch.manual_seed(1)
    first = rng_state()
    torch.rand(3)
    second = rng_state()
    restore_rng(rank_rng_state([first, second], rank=1, world_size=2))
    assert torch.equal(torch.get_rng_state(), second["torch"])
    restore_rng(rank_rng_state(first, rank=1, world_size=2))  # a checkpoint written before the states were per rank
    assert torch.equal(torch.get_rng_state(), first["torch"])
    assert rank_rng_state([first, second], rank=0, world_size=4) is None  # world size changed: keep the seeded state
