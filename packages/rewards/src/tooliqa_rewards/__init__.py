"""Tool-IQA rewards: VisualQuality-R1's rank (Thurstone fidelity) reward, the protocol format reward and BATE.

Depends on torch only; the trainer turns agent trajectories into the plain tensors and `FormatRecord`s used here.
"""

from tooliqa_rewards.bate import BATEConfig, batch_tool_rate, bate_reward
from tooliqa_rewards.composite import (
    REWARDS,
    RewardConfig,
    RewardContext,
    RewardInputs,
    RewardOutput,
    RewardStats,
    RewardWeights,
    compute_rewards,
)
from tooliqa_rewards.errors import RewardInputError
from tooliqa_rewards.format import FORMAT_CHECKS, RUBRIC_LEVELS, FormatRecord, FormatResult, format_reward
from tooliqa_rewards.rank import rank_reward

__all__ = [
    "BATEConfig",
    "FORMAT_CHECKS",
    "FormatRecord",
    "FormatResult",
    "REWARDS",
    "RUBRIC_LEVELS",
    "RewardConfig",
    "RewardContext",
    "RewardInputError",
    "RewardInputs",
    "RewardOutput",
    "RewardStats",
    "RewardWeights",
    "bate_reward",
    "batch_tool_rate",
    "compute_rewards",
    "format_reward",
    "rank_reward",
]
