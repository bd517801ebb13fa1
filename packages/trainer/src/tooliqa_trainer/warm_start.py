"""A supervised warm start of the score, before GRPO: the tiny random model's stand-in for pretraining.

The paper starts RL from Qwen3-VL-8B-Instruct, which already writes a score that follows quality (zero-shot SRCC
≈ .75, paper Table 1) and has never been taught when a tool helps. A random tiny model writes scores unrelated to the
image, so RL would have to teach it to read an image and to decide on tools at once, with one advantage per
trajectory. The warm start gives it the first skill only. Before the first GRPO step it makes ``epochs`` passes over
the training images; each image gets ``group_size`` trajectories sampled by the policy itself, and the loss is the
cross-entropy of each trajectory's final score digit — at the position the policy wrote it — against the image's MOS
spread over its two neighbouring digits (the target's expectation is the MOS). Only that token carries loss: rubric
levels and tool decisions stay the policy's own random ones, so it learns to read a score off whatever views a
trajectory holds, not when to call a tool. Then the KL reference becomes a copy of the warm-started policy, as the
paper's reference is the model RL starts from.

Off by default (``epochs: 0``, the paper); the CPU demo turns it on (``configs/demo.yaml``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from tooliqa_agent.rollout import Agent
from tooliqa_agent.trajectory import Trajectory
from tooliqa_trainer.microbatch import chunks
from tooliqa_trainer.readout import digit_logits, leading_digit_position
from tooliqa_trainer.warm_actions import ScriptedActions, action_menu

__all__ = ["WarmStartConfig", "WarmStartReport", "digit_targets", "run_warm_start", "score_cross_entropy"]


@dataclass(frozen=True)
class WarmStartConfig:
    """Supervised passes over the training images on the written score, before GRPO (none in the paper)."""

    epochs: int = 0
    """Passes over the training images before the first GRPO step; 0 = no warm start (the paper)."""
    group_size: int = 2
    """Trajectories the policy samples per image in the warm start (each with its own rubric levels and actions)."""
    batch_size: int = 16
    """Images per supervised optimizer step (on each rank)."""
    lr: float = 1e-3
    """AdamW learning rate of the warm start (its own optimizer: GRPO's starts fresh after it)."""
    mos_range: tuple[float, float] = (1.0, 5.0)
    """The training labels' MOS range, mapped linearly onto the protocol's score range for the targets."""
    actions: Literal["own", "each"] = "own"
    """What the trajectories do after their own rubric note. "own": the policy samples its actions (each view at the
    random policy's own rates). "each": a script answers at once or calls each enabled tool with each argument its
    grammar offers, in turn over the trajectories, then answers (``tooliqa_trainer.warm_actions``), so every view is
    read equally often on every image; never depending on the image, it still teaches nothing about when to call."""

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.group_size < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(
                "WarmStartConfig: need epochs ≥ 0, group_size ≥ 1, batch_size ≥ 1 and lr > 0, got "
                f"{self.epochs}, {self.group_size}, {self.batch_size}, {self.lr}"
            )
        low, high = self.mos_range
        if not low < high:
            raise ValueError(f"WarmStartConfig.mos_range must be (low, high) with low < high, got {self.mos_range}")


@dataclass(frozen=True)
class WarmStartReport:
    """What the warm start measured, per pass."""

    loss: tuple[float, ...]
    """Mean cross-entropy of the score digit per epoch (nats; a constant predictor of these labels: ≈ 1.5)."""
    accuracy: tuple[float, ...]
    """Share of trajectories whose most probable digit is the target's heaviest one, per epoch."""
    steps: int
    """Supervised optimizer steps taken."""

    def summary(self) -> str:
        epochs = " → ".join(f"{loss:.3f}" for loss in self.loss)
        return (
            f"warm start: {self.steps} supervised steps on the written score; cross-entropy per epoch {epochs}, "
            f"digit accuracy {self.accuracy[0]:.2f} → {self.accuracy[-1]:.2f}"
        )


def digit_targets(mos: Tensor, mos_range: tuple[float, float], digits: Sequence[int]) -> Tensor:
    """Soft targets over the score's leading digits whose expectation is the MOS (mapped onto the digits' range).

    Args:
        mos: ``[B]`` labels.
        mos_range: the labels' (low, high), mapped onto (digits[0], digits[-1]); labels outside are clamped.
        digits: the consecutive leading digits the score range admits (e.g. 1..5).

    Returns:
        ``[B, len(digits)]`` rows summing to 1, non-zero on at most the two digits around the mapped MOS.
    """
    low, high = mos_range
    unit = ((mos.float() - low) / (high - low)).clamp(0.0, 1.0)
    position = unit * (len(digits) - 1)  # 0 .. D-1 on the digits' axis
    below = position.floor().long().clamp(max=len(digits) - 2) if len(digits) > 1 else position.long()
    upper_weight = position - below.float()
    targets = torch.zeros(len(mos), len(digits))
    rows = torch.arange(len(mos))
    targets[rows, below] = 1.0 - upper_weight
    if len(digits) > 1:
        targets[rows, below + 1] += upper_weight
    return targets


def score_cross_entropy(
    model: nn.Module,
    trajectories: Sequence[Trajectory],
    targets: Tensor,
    processor,
    digits: Sequence[int],
    temperature: float,
) -> tuple[Tensor, int, float]:
    """Cross-entropy of each trajectory's final score digit against its target, over the digits the range admits
    (the structured grammar allows only those there, so this is the distribution the policy samples from).

    Args:
        model: the policy (with grad).
        trajectories: N trajectories; those without a readable score digit carry no loss.
        targets: ``[N, D]`` soft targets (:func:`digit_targets`).
        digits: the D leading digits.
        temperature: the sampling temperature the logits are divided by (SPEC §5).

    Returns:
        The summed loss over scored trajectories (a 0-dim tensor with grad; 0 when none was scored), how many were
        scored, and how many of those put their most probable digit on the target's heaviest one.
    """
    located = [(i, leading_digit_position(t, processor.tokenizer)) for i, t in enumerate(trajectories)]
    scored = [(i, p) for i, p in located if p is not None]
    device = next(model.parameters()).device
    if not scored:  # a zero that still reaches every trainable weight: DDP's reducer waits for all of their grads
        zero = sum(p.sum() for p in model.parameters() if p.requires_grad) * 0.0
        return zero, 0, 0.0
    logits = digit_logits(model, [trajectories[i] for i, _ in scored], [p for _, p in scored], processor, digits)
    log_probs = (logits.float() / temperature).log_softmax(-1)  # [n, D]
    wanted = targets[[i for i, _ in scored]].to(device)
    loss = -(wanted * log_probs).sum()
    hits = (log_probs.argmax(-1) == wanted.argmax(-1)).float().sum().item()
    return loss, len(scored), hits


def _scripted_agent(module) -> Agent:
    """The module's protocol over :class:`~tooliqa_trainer.warm_actions.ScriptedActions` (rubric turns: its engine)."""
    protocol = module.rollout_config.protocol
    toolkit = module.agent.toolkit
    schemas = [toolkit.tool(name).schema() for name in toolkit.names] if protocol.tools_on else []
    engine = ScriptedActions(module.engine, module.processor, action_menu(schemas, protocol), int(protocol.rubric))
    return Agent(engine, module.processor, protocol)


def run_warm_start(module, config: WarmStartConfig) -> WarmStartReport:
    """The warm start's passes on a :class:`~tooliqa_trainer.module.GRPOModule` about to take step 0; then the engine
    gets the warm weights and the KL reference becomes a copy of them. Logs its last epoch's loss and accuracy.

    Args:
        module: the module (its policy, rollout, processor, datamodule and ``manual_backward`` are used).
        config: the warm start.
    """
    trainer, datamodule = module.trainer, module.trainer.datamodule
    if module.zero3 is not None or getattr(trainer.strategy, "deepspeed_engine", None) is not None:
        raise ValueError("warm_start runs under one process or DDP; DeepSpeed keeps its own optimizer")

    def batches(epoch: int):
        for batch in datamodule.warm_start_batches(config.batch_size, epoch):
            yield datamodule.transfer_batch_to_device(batch, module.device, 0)

    agent = _scripted_agent(module) if config.actions == "each" else None
    params = [p for p in module.policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    digits = module.assessor.context.digits
    temperature = module.rollout_config.sampling.logprob_temperature
    losses, accuracies, steps = [], [], 0
    for epoch in range(config.epochs):
        total, scored, hits = 0.0, 0, 0.0
        for batch in batches(epoch):
            groups = module.rollout(batch, group_size=config.group_size, seed_step=-1 - steps, agent=agent)
            trajectories = [t for group in groups for t in group]
            targets = digit_targets(batch.mos.cpu(), config.mos_range, digits)  # [B, D]
            targets = targets.repeat_interleave(config.group_size, dim=0)  # [B·G, D], row-major like trajectories
            optimizer.zero_grad()
            for micro in chunks(range(len(trajectories)), module.grpo.micro_batch_size):
                loss, n, h = score_cross_entropy(
                    module.policy,
                    [trajectories[i] for i in micro],
                    targets[list(micro)],
                    module.processor,
                    digits,
                    temperature,
                )
                module.manual_backward(loss / len(trajectories))
                total, scored, hits = total + loss.item(), scored + n, hits + h
            if module.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, module.optim.grad_clip)
            optimizer.step()
            steps += 1
        losses.append(total / max(scored, 1))
        accuracies.append(hits / max(scored, 1))
    optimizer.zero_grad(set_to_none=True)
    module.push_weights()
    if module._reference:
        module._reference[0].load_state_dict(module.policy.state_dict())
    report = WarmStartReport(tuple(losses), tuple(accuracies), steps)
    if trainer.is_global_zero:
        for logger in module.loggers:
            logger.log_metrics({"warm_start/loss": report.loss[-1], "warm_start/accuracy": report.accuracy[-1]}, 0)
    return report
