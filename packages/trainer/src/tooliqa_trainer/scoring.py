"""From trajectories to rewards: the plain-data inputs of ``tooliqa_rewards.compute_rewards``, gathered over ranks.

The rank reward and BATE's tool-usage rate ρ are batch-level quantities (SPEC §4): every rank scores the GLOBAL batch
(all ranks' images, gathered) and keeps its own rows, so a run on 8 GPUs computes the same rewards as on one.
With ``RewardConfig.rank_within_dataset`` the images' dataset names become the rank reward's groups.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

import torch

from tooliqa_agent.protocol import ProtocolConfig
from tooliqa_agent.trajectory import Trajectory
from tooliqa_rewards import FormatRecord, RewardConfig, RewardInputs, RewardOutput, compute_rewards

__all__ = ["dataset_id", "format_record", "reward_inputs", "score_global_batch"]


def dataset_id(name: str) -> int:
    """A dataset's group id for the rank reward: the same on every rank with no exchange of names (a 63-bit hash;
    two names of one run colliding is a 2^-63 chance)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest()) >> 1


def format_record(trajectory: Trajectory, protocol: ProtocolConfig) -> FormatRecord:
    """The format reward's view of one trajectory: its texts, which tool calls ran, the parsed score."""
    rubric = [turn.text for turn in trajectory.turns if turn.kind == "rubric"]
    actions = [turn for turn in trajectory.turns if turn.kind != "rubric"]
    return FormatRecord(
        rubric_text=rubric[0] if rubric else None,
        action_texts=tuple(turn.text for turn in actions),
        tool_calls_valid=tuple(turn.tool_ok for turn in actions if turn.tried_tool),
        score=trajectory.score,
        rubric_required=protocol.rubric,
        max_tool_rounds=protocol.max_tool_rounds,
        thinking_tag=protocol.thinking_tag,
    )


def reward_inputs(
    groups: Sequence[Sequence[Trajectory]],
    mos: torch.Tensor,
    protocol: ProtocolConfig,
    datasets: Sequence[str] | None = None,
) -> RewardInputs:
    """Rewards inputs of one rank's rollout.

    Args:
        groups: ``[B][G]`` trajectories from ``Agent.rollout``.
        mos: ``[B]`` ground-truth quality, higher = better.
        datasets: ``[B]`` dataset names of the images (``IQAItem.dataset``): the rank reward's groups, used with
            ``RewardConfig.rank_within_dataset``.

    Returns:
        :class:`RewardInputs` with ``[B, G]`` tensors on CPU and B·G format records in row-major order.
    """
    flat = [t for group in groups for t in group]
    shape = (len(groups), len(groups[0]))

    def grid(values, dtype):
        return torch.tensor(values, dtype=dtype).reshape(shape)

    scores = grid([float("nan") if t.score is None else t.score for t in flat], torch.float32)
    return RewardInputs(
        scores=scores,
        mos=mos.detach().float().cpu(),
        valid=scores.isfinite(),
        used_tool=grid([t.num_successful_calls > 0 for t in flat], torch.bool),
        tool_free=grid([t.num_tool_calls == 0 for t in flat], torch.bool),
        format_records=tuple(format_record(t, protocol) for t in flat),
        groups=None if datasets is None else torch.tensor([dataset_id(name) for name in datasets], dtype=torch.long),
        n_successful_calls=grid([t.num_successful_calls for t in flat], torch.long),
        n_failed_calls=grid([t.num_failed_calls for t in flat], torch.long),
    )


def _concat(parts: Sequence[RewardInputs]) -> RewardInputs:
    """Stack several ranks' inputs along the image axis (rank order)."""
    if len(parts) == 1:
        return parts[0]
    cat = lambda name: torch.cat([getattr(p, name) for p in parts])  # noqa: E731
    return RewardInputs(
        scores=cat("scores"),
        mos=cat("mos"),
        valid=cat("valid"),
        used_tool=cat("used_tool"),
        tool_free=cat("tool_free"),
        format_records=tuple(r for p in parts for r in p.format_records),
        groups=None if any(p.groups is None for p in parts) else cat("groups"),
        n_successful_calls=cat("n_successful_calls"),
        n_failed_calls=cat("n_failed_calls"),
    )


def _rows(output: RewardOutput, start: int, stop: int) -> RewardOutput:
    """This rank's image rows of a global reward output (the batch-level stats stay global)."""
    return dataclasses.replace(
        output,
        total=output.total[start:stop],
        rank=output.rank[start:stop],
        format=output.format[start:stop],
        bate=output.bate[start:stop],
    )


def score_global_batch(local: RewardInputs, config: RewardConfig) -> RewardOutput:
    """Rewards of this rank's rows, computed over the batch gathered from every rank (equal B per rank).

    Returns:
        :class:`RewardOutput` with ``[B, G]`` tensors for this rank's images; ``stats`` describe the global batch.
    """
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    if world == 1:
        return compute_rewards(local, config)
    parts: list[RewardInputs | None] = [None] * world
    torch.distributed.all_gather_object(parts, local)  # small: B·G floats and texts per rank
    rank = torch.distributed.get_rank()
    b = local.scores.shape[0]
    return _rows(compute_rewards(_concat(parts), config), rank * b, (rank + 1) * b)
