"""The total reward R = Σ weight · component over the `REWARDS` registry, with the per-batch stats for logging."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from tooliqa_rewards.bate import BATEConfig, batch_tool_rate, bate_reward
from tooliqa_rewards.errors import RewardInputError, expect_batch
from tooliqa_rewards.format import FormatRecord, FormatResult, format_reward
from tooliqa_rewards.rank import RANK_EPS, rank_reward


@dataclass(frozen=True)
class RewardWeights:
    """Weight of each `REWARDS` component in the total (0 switches a component off; it is still logged)."""

    rank: float = 1.0
    """Rank (Thurstone fidelity) reward."""
    format: float = 1.0
    """Format reward (1/0)."""
    bate: float = 1.0
    """BATE tool-efficiency reward."""


@dataclass(frozen=True)
class RewardConfig:
    """How the rewards of a batch are computed and combined."""

    weights: RewardWeights = field(default_factory=RewardWeights)
    """Weight of each component in the total."""
    bate: BATEConfig = field(default_factory=BATEConfig)
    """BATE's constants."""
    rank_eps: float = RANK_EPS
    """ε of the rank reward (VisualQuality-R1: 1e-6)."""
    rank_within_dataset: bool = False
    """Rank each image only against the images of its own dataset (SPEC §4's option; the ids are
    ``RewardInputs.groups``, required when on). Off: against every image of the batch. It matters when a batch mixes
    datasets whose MOS scales differ; the trainer's datamodule draws one dataset per step, so there it changes nothing."""


@dataclass(frozen=True, kw_only=True)
class RewardInputs:
    """One batch of B images × G trajectories, as plain tensors and records (all ``[B, G]`` tensors row-major)."""

    scores: torch.Tensor
    """float ``[B, G]``: parsed final scores (NaN where none)."""
    mos: torch.Tensor
    """float ``[B]``: ground-truth MOS, higher = better."""
    valid: torch.Tensor
    """bool ``[B, G]``: the trajectory has a valid final score."""
    used_tool: torch.Tensor
    """bool ``[B, G]``: ≥ 1 successful tool call."""
    tool_free: torch.Tensor
    """bool ``[B, G]``: no tool call at all."""
    n_successful_calls: torch.Tensor
    """integer ``[B, G]``: tool calls that parsed and ran."""
    n_failed_calls: torch.Tensor
    """integer ``[B, G]``: tool calls that failed (parse or run)."""
    format_records: tuple[FormatRecord, ...]
    """B·G records, row-major (image i, trajectory k at i·G + k)."""
    groups: torch.Tensor | None = None
    """Optional integer ``[B]`` dataset ids: with ``RewardConfig.rank_within_dataset`` rank comparisons stay within
    a group (ignored otherwise)."""
    rho: float | None = None
    """Batch tool rate for BATE; None computes it from this batch (pass the all-ranks rate when sharded)."""

    def __post_init__(self) -> None:
        groups = {} if self.groups is None else {"groups": (self.groups, "int", True)}
        b, g = expect_batch(
            "RewardInputs",
            self.scores,
            mos=(self.mos, "float", True),
            valid=(self.valid, "bool", False),
            used_tool=(self.used_tool, "bool", False),
            tool_free=(self.tool_free, "bool", False),
            n_successful_calls=(self.n_successful_calls, "int", False),
            n_failed_calls=(self.n_failed_calls, "int", False),
            **groups,
        )
        if len(self.format_records) != b * g:
            raise RewardInputError(
                f"RewardInputs: format_records needs B·G = {b * g} records, got {len(self.format_records)}"
            )


@dataclass(frozen=True)
class RewardContext:
    """What a component reads: the batch, the config, and the pieces shared by several components."""

    inputs: RewardInputs
    config: RewardConfig
    rho: float
    """The batch tool rate BATE shapes with."""
    rank: torch.Tensor
    """float ``[B, G]`` rank rewards (also BATE's fidelity scores s)."""
    format: FormatResult
    """Format rewards and the per-check breakdown."""


RewardFn = Callable[[RewardContext], torch.Tensor]


def _rank(ctx: RewardContext) -> torch.Tensor:
    return ctx.rank


def _format(ctx: RewardContext) -> torch.Tensor:
    return ctx.format.reward.to(ctx.rank.device, ctx.rank.dtype).view_as(ctx.rank)


def _bate(ctx: RewardContext) -> torch.Tensor:
    i = ctx.inputs
    return bate_reward(ctx.rank, i.used_tool, i.tool_free, i.valid, ctx.config.bate, rho=ctx.rho)[0]


REWARDS: dict[str, RewardFn] = {"rank": _rank, "format": _format, "bate": _bate}
"""Component name → function of the context returning float ``[B, G]``; each has a `RewardWeights` field."""


@dataclass(frozen=True)
class RewardStats:
    """Batch summaries for logging; means are over all B·G trajectories."""

    rho: float
    """Batch tool rate used by BATE."""
    valid_rate: float
    """Fraction of trajectories with a valid final score."""
    mean_total: float
    """Mean weighted total reward."""
    mean_rank: float
    """Mean rank reward (0 for invalid trajectories)."""
    mean_format: float
    """Mean format reward: the fraction of trajectories passing every check."""
    mean_bate: float
    """Mean BATE (0 outside T)."""
    calls_per_trajectory: float
    """Tool calls issued per trajectory (successful + failed)."""
    successful_call_rate: float
    """Successful calls / issued calls (0.0 when no call was issued)."""
    failed_call_rate: float
    """Failed calls / issued calls (0.0 when no call was issued)."""
    format_failure_rates: tuple[tuple[str, float], ...]
    """(check, fraction of trajectories failing it) per format check."""

    def log(self, prefix: str = "reward") -> dict[str, float]:
        """Flat ``{"<prefix>/<name>": value}`` for a logger; format checks as ``<prefix>/format_fail/<check>``."""
        head = f"{prefix}/" if prefix else ""
        values = ((f.name, getattr(self, f.name)) for f in dataclasses.fields(self))
        out = {f"{head}{name}": value for name, value in values if isinstance(value, float)}
        out.update({f"{head}format_fail/{name}": rate for name, rate in self.format_failure_rates})
        return out


@dataclass(frozen=True)
class RewardOutput:
    """Per-trajectory rewards, float ``[B, G]`` each, on the scores' device."""

    total: torch.Tensor
    """Σ weight · component."""
    rank: torch.Tensor
    """Rank reward."""
    format: torch.Tensor
    """Format reward (1/0)."""
    bate: torch.Tensor
    """BATE (0 outside T)."""
    stats: RewardStats
    """Batch summaries for logging."""
    format_result: FormatResult
    """Which format checks each trajectory passed (row-major, CPU)."""


@torch.no_grad()
def compute_rewards(inputs: RewardInputs, config: RewardConfig = RewardConfig()) -> RewardOutput:
    """All components of `REWARDS`, their weighted total and the batch stats."""
    rho = batch_tool_rate(inputs.used_tool, inputs.valid) if inputs.rho is None else inputs.rho
    if config.rank_within_dataset and inputs.groups is None:
        raise RewardInputError("RewardConfig.rank_within_dataset needs RewardInputs.groups (the images' dataset ids)")
    groups = inputs.groups if config.rank_within_dataset else None
    rank = rank_reward(inputs.scores, inputs.mos, inputs.valid, groups, eps=config.rank_eps)
    ctx = RewardContext(inputs, config, rho, rank, format_reward(inputs.format_records))
    parts = {name: fn(ctx) for name, fn in REWARDS.items()}
    total = sum(getattr(config.weights, name) * part for name, part in parts.items())

    counts = torch.stack([inputs.valid.sum(), inputs.n_successful_calls.sum(), inputs.n_failed_calls.sum()])
    means = torch.stack([total, parts["rank"], parts["format"], parts["bate"]]).mean((1, 2))
    summary = torch.cat([means, counts.to(means.dtype)]).tolist()  # one device sync for all scalars
    mean_total, mean_rank, mean_format, mean_bate, n_valid, n_ok, n_failed = summary
    n_calls = n_ok + n_failed
    stats = RewardStats(
        rho=rho,
        valid_rate=n_valid / rank.numel(),
        mean_total=mean_total,
        mean_rank=mean_rank,
        mean_format=mean_format,
        mean_bate=mean_bate,
        calls_per_trajectory=n_calls / rank.numel(),
        successful_call_rate=n_ok / n_calls if n_calls else 0.0,
        failed_call_rate=n_failed / n_calls if n_calls else 0.0,
        format_failure_rates=ctx.format.failure_rates(),
    )
    return RewardOutput(
        total=total,
        rank=parts["rank"],
        format=parts["format"],
        bate=parts["bate"],
        stats=stats,
        format_result=ctx.format,
    )
