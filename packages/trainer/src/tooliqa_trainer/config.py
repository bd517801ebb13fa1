"""Typed, frozen configs of the trainer. Each field's docstring is its ``--help`` text in ``apps/train.py``.

The model, data and trainer sections of a YAML config map onto these (LightningCLI builds them with jsonargparse);
library code never sees a raw dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from jsonargparse.typing import register_type

from tooliqa_agent.grammar import RubricAttribute
from tooliqa_agent.protocol import ProtocolConfig
from tooliqa_agent.tiny_model import TinyModelConfig
from tooliqa_agent.types import EngineConfig, SamplingConfig
from tooliqa_trainer.advantages import ADVANTAGES
from tooliqa_trainer.credit import CREDITS
from tooliqa_trainer.loss import LOSSES
from tooliqa_trainer.schedule import LR_SCHEDULES, PiecewiseConstant

__all__ = ["GRPOConfig", "LoraConfig", "OptimConfig", "PolicyConfig", "RolloutConfig", "ValidationConfig"]

Dtype = Literal["float32", "bfloat16", "float16"]


@dataclass(frozen=True)
class LoraConfig:
    """peft LoRA adapters on the language model; the reference policy is the same model with adapters disabled."""

    r: int = 64
    """Adapter rank."""
    alpha: int = 128
    """Scaling numerator (the update is scaled by alpha / r)."""
    dropout: float = 0.0
    """Dropout on the adapter input (0 keeps rollout and training forward identical)."""
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    """Module-name suffixes that get adapters (attention projections by default)."""

    def __post_init__(self) -> None:
        if self.r < 1 or self.alpha < 1:
            raise ValueError(f"LoraConfig: r and alpha must be ≥ 1, got r={self.r}, alpha={self.alpha}")
        if not self.target_modules:
            raise ValueError("LoraConfig.target_modules is empty")


@dataclass(frozen=True)
class PolicyConfig:
    """Which checkpoint becomes the policy and how it is wrapped."""

    path: str = "Qwen/Qwen3-VL-8B-Instruct"
    """A hub id or a local directory (a real Qwen3-VL checkpoint or the tiny kit); loaded in ``configure_model``."""
    tiny: TinyModelConfig | None = None
    """If set, build the tiny random Qwen3-VL kit at ``path`` first (unless it is already there, same config)."""
    dtype: Dtype = "bfloat16"
    """Weight dtype of the policy (and of the reference copy)."""
    attn_implementation: str = "sdpa"
    """transformers attention kernel."""
    lora: LoraConfig | None = None
    """LoRA adapters; None = full fine-tuning with a frozen reference copy."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (memory for time)."""
    freeze_vision: bool = False
    """Keep the vision tower frozen in full fine-tuning."""
    random_init: bool = False
    """Build the model from ``path``'s ``config.json`` with random weights instead of loading them (shape benchmarks
    of the 8B model without a download)."""


@dataclass(frozen=True)
class GRPOConfig:
    """The policy-gradient update (SPEC §5)."""

    loss: str = "gspo"
    """Loss variant, a key of ``tooliqa_trainer.loss.LOSSES``: ``gspo`` (sequence-level ratio) or ``grpo`` (token)."""
    advantage: str = "grpo"
    """Advantage estimator, a key of ``tooliqa_trainer.advantages.ADVANTAGES``: ``grpo`` or ``rloo``."""
    credit: str = "sequence"
    """Which advantage each token carries, a key of ``tooliqa_trainer.credit.CREDITS``: ``sequence`` (the paper: the
    trajectory's, on every token), ``action`` (a tool-or-answer decision carries the mean advantage of the group's
    trajectories that decided the same; the rubric note and the score keep the trajectory's) or ``contrast`` (as
    ``action``, less the decision's mean credit over the batch's images)."""
    epsilon_low: float = 3e-4
    """Lower clip range: the weight is clipped at 1 − epsilon_low (GSPO paper value; inert with one update)."""
    epsilon_high: float = 4e-4
    """Upper clip range: the weight is clipped at 1 + epsilon_high."""
    kl_schedule: tuple[tuple[int, float], ...] = ((0, 0.04), (340, 0.06))
    """β by optimizer step: ``[[first_step, beta], ...]`` piecewise constant (paper: 0.04, then 0.06 from step 340)."""
    ppo_epochs: int = 1
    """Passes over each rollout batch (inner updates = ppo_epochs × minibatches optimizer steps per rollout)."""
    minibatches: int = 1
    """Optimizer steps per pass, each on an equal share of the B·G trajectories."""
    micro_batch_size: int = 4
    """Trajectories per policy forward/backward (gradients accumulate over a minibatch's micro-batches)."""
    recompute_old_logprobs: bool = True
    """Take π_old from a no-grad forward of the training policy before the updates (TRL); False trusts the engine's
    sampling log-probs (exposes clipping to engine/trainer numerics mismatch)."""

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"GRPOConfig.loss: unknown {self.loss!r}; choose one of {sorted(LOSSES)}")
        if self.advantage not in ADVANTAGES:
            raise ValueError(f"GRPOConfig.advantage: unknown {self.advantage!r}; choose one of {sorted(ADVANTAGES)}")
        if self.credit not in CREDITS:
            raise ValueError(f"GRPOConfig.credit: unknown {self.credit!r}; choose one of {sorted(CREDITS)}")
        if min(self.ppo_epochs, self.minibatches, self.micro_batch_size) < 1:
            raise ValueError("GRPOConfig: ppo_epochs, minibatches and micro_batch_size must be ≥ 1")
        PiecewiseConstant(self.kl_schedule)  # validates

    @property
    def inner_updates(self) -> int:
        """Optimizer steps per rollout batch."""
        return self.ppo_epochs * self.minibatches

    @property
    def beta(self) -> PiecewiseConstant:
        """The KL schedule as a callable ``step → β``."""
        return PiecewiseConstant(self.kl_schedule)


@dataclass(frozen=True)
class OptimConfig:
    """AdamW and its learning-rate schedule (SPEC §5: lr 2e-6, warmup ratio 0.05, then constant)."""

    lr: float = 2e-6
    """Peak learning rate."""
    warmup_ratio: float = 0.05
    """Fraction of ``trainer.max_steps`` spent in linear warmup from 0."""
    schedule: str = "constant_with_warmup"
    """Multiplier after warmup, a key of ``tooliqa_trainer.schedule.LR_SCHEDULES``."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW moment decay rates."""
    eps: float = 1e-8
    """AdamW denominator epsilon."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value before each step; 0 disables."""

    def __post_init__(self) -> None:
        if self.lr <= 0 or not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"OptimConfig: need lr > 0 and 0 ≤ warmup_ratio < 1, got {self.lr}, {self.warmup_ratio}")
        if self.schedule not in LR_SCHEDULES:
            raise ValueError(f"OptimConfig.schedule: unknown {self.schedule!r}; choose one of {sorted(LR_SCHEDULES)}")


@dataclass(frozen=True)
class RolloutConfig:
    """How trajectories are sampled during training: engine, group size, sampling, assessment protocol."""

    engine: EngineConfig = EngineConfig()
    """Rollout engine (``hf`` shares the policy object; ``vllm`` runs colocated and gets weights pushed each step)."""
    group_size: int = 4
    """G: trajectories per image (the paper's 4)."""
    sampling: SamplingConfig = SamplingConfig()
    """Sampling of every assistant turn (paper: temperature 0.9)."""
    protocol: ProtocolConfig = ProtocolConfig()
    """The multi-turn protocol: tools, tool rounds, rubric turn, structured decoding."""

    def __post_init__(self) -> None:
        if self.group_size < 2:
            raise ValueError(
                f"RolloutConfig.group_size must be ≥ 2 (advantages are group-relative), got {self.group_size}"
            )


@dataclass(frozen=True)
class ValidationConfig:
    """Held-out assessment during training (the same Agent path as ``apps/eval.py``)."""

    sampling: SamplingConfig = SamplingConfig(temperature=0.0)
    """Sampling for held-out scoring (greedy by default, so validation is deterministic)."""
    samples: int = 1
    """Trajectories per held-out image; > 1 scores the mean of their valid scores (needs temperature > 0)."""
    readout: Literal["sampled", "expected"] = "sampled"
    """How an image's trajectories become its score (``tooliqa_trainer.readout``): the mean parsed score, or the
    probability-weighted score (the answer's leading digit replaced by its expectation under the policy)."""
    also_readouts: tuple[Literal["sampled", "expected"], ...] = ()
    """Readouts of the same held-out trajectories printed and logged beside ``readout`` (``val_<name>/srcc``),
    labelled: e.g. the probability-weighted score beside the paper's written one."""
    failure_score: float = 3.0
    """Score given to a parse failure when computing SRCC/PLCC (the middle of [1, 5]); failures are also counted."""


def _rubric_to_dict(attribute: RubricAttribute) -> dict:
    return {"name": attribute.name, "levels": list(attribute.levels)}


def _rubric_from_dict(value) -> RubricAttribute:
    if isinstance(value, RubricAttribute):
        return value
    if not isinstance(value, dict) or set(value) != {"name", "levels"}:
        raise ValueError(f"a rubric line is {{name: ..., levels: [...]}}, got {value!r}")
    return RubricAttribute(str(value["name"]), tuple(str(level) for level in value["levels"]))


# jsonargparse cannot write a dataclass nested in a tuple (GrammarConfig.rubric): without this, every run warned 5
# times and saved a config.yaml that did not parse back, so `fit --ckpt_path` and `--config <run>/config.yaml` failed.
register_type(RubricAttribute, _rubric_to_dict, _rubric_from_dict)
