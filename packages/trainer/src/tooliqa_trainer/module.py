"""GRPO with sequence-level importance sampling (GSPO) for the Tool-IQA agent, as a LightningModule.

Algorithm choices (SPEC §5; TRL ``GRPOTrainer`` with ``importance_sampling_level="sequence"``, ``loss_type="grpo"``):

* each step: B images → G trajectories each through the multi-turn agent (engine by name; ``hf`` generates with
  this very policy object, ``vllm`` runs colocated and receives the weights after every step);
* rewards rank + format + BATE from ``tooliqa_rewards``, over the GLOBAL batch (gathered across ranks);
* group advantages (R − mean_G) / (std_G + 1e-4), one per trajectory, on each of its model tokens (``grpo.credit``
  may give its decisions their action's instead: ``tooliqa_trainer.credit``);
* only model-generated tokens carry loss — prompts, tool views and observation turns are masked by the agent;
* log-probs from logits divided by the sampling temperature; π_old from a no-grad forward before the updates, so
  with one update per rollout the ratio is exactly 1 and the clip is inert (``inner_updates`` > 1 makes it bite);
* β·KL_k3 per token to the reference (LoRA: adapters disabled; full fine-tune: a frozen copy of the initial model),
  β from a step-indexed schedule (paper 0.04 → 0.06 at optimizer step 340);
* mean over each trajectory's tokens, then over trajectories; AdamW, warmup then constant lr, grad-norm clip 1.0;
* optionally (not the paper; the CPU demo) a supervised warm start of the written score before the first step
  (``tooliqa_trainer.warm_start``), after which the KL reference is the warm-started policy.

Manual optimization: one ``training_step`` = one rollout batch = ``ppo_epochs × minibatches`` optimizer steps;
``trainer.global_step`` counts optimizer steps, and β and lr are pure functions of it (exact on resume).
"""

from __future__ import annotations

import dataclasses
from contextlib import closing
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from tooliqa_agent.collate import collate
from tooliqa_agent.engines import make_engine
from tooliqa_agent.rollout import Agent
from tooliqa_agent.trajectory import Trajectory
from tooliqa_agent.types import Engine
from tooliqa_rewards import RewardConfig, RewardOutput
from tooliqa_trainer.advantages import make_advantage
from tooliqa_trainer.assessor import AgentAssessor
from tooliqa_trainer.checkpoint_state import plain, rank_rng_state, restore_rng, rng_state
from tooliqa_trainer.config import GRPOConfig, OptimConfig, PolicyConfig, RolloutConfig, ValidationConfig
from tooliqa_trainer.credit import make_credit
from tooliqa_trainer.datamodule import ImageBatch
from tooliqa_trainer.loss import LossStats, make_loss
from tooliqa_trainer.microbatch import StepTimer, chunks, pad_rows
from tooliqa_trainer.policy import (
    engine_weights,
    frozen_logprobs,
    load_policy,
    make_reference,
    reference_mode,
    token_logprobs,
)
from tooliqa_trainer.ranks import accumulation_boundary, deepspeed_settings, every_rank, own_entry
from tooliqa_trainer.schedule import make_lr_lambda
from tooliqa_trainer.scoring import reward_inputs, score_global_batch
from tooliqa_trainer.tool_report import ValidationRow, step_metrics
from tooliqa_trainer.validation import HeldOutResult, held_out_change, held_out_result
from tooliqa_trainer.warm_start import WarmStartConfig, run_warm_start
from tooliqa_trainer.zero3 import (
    check_zero3_dtype,
    check_zero3_setup,
    hf_zero3_loading,
    wrap_reference,
    zero3_config,
    zero_init_active,
)

__all__ = ["GRPOModule"]


class GRPOModule(L.LightningModule):
    """Trains the Tool-IQA policy. Nothing heavy happens in ``__init__``: the model loads in ``configure_model``, the
    rollout engine is built at fit start (:meth:`setup_engine`)."""

    def __init__(
        self,
        policy: PolicyConfig = PolicyConfig(),  # noqa: B008 (frozen dataclass: an immutable default)
        rollout: RolloutConfig = RolloutConfig(),  # noqa: B008 (frozen dataclass: an immutable default)
        grpo: GRPOConfig = GRPOConfig(),  # noqa: B008 (frozen dataclass: an immutable default)
        optim: OptimConfig = OptimConfig(),  # noqa: B008 (frozen dataclass: an immutable default)
        rewards: RewardConfig = RewardConfig(),  # noqa: B008 (frozen dataclass: an immutable default)
        validation: ValidationConfig = ValidationConfig(),  # noqa: B008 (frozen dataclass: an immutable default)
        warm_start: WarmStartConfig = WarmStartConfig(),  # noqa: B008 (frozen dataclass: an immutable default)
    ) -> None:
        """
        Args:
            policy: checkpoint, dtype, LoRA / full fine-tune, gradient checkpointing.
            rollout: engine, group size G, sampling, assessment protocol.
            grpo: loss and advantage variants, clip range, KL schedule, inner updates, micro-batch size.
            optim: AdamW and the learning-rate schedule.
            rewards: weights of rank / format / BATE and BATE's shaping constants.
            validation: held-out scoring settings.
            warm_start: supervised passes on the written score before GRPO (not the paper; the tiny demo's).
        """
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.policy_config, self.rollout_config, self.grpo, self.optim = policy, rollout, grpo, optim
        self.reward_config, self.validation_config = rewards, validation
        self.warm_start = warm_start
        if warm_start.epochs > 0 and policy.lora is not None and grpo.beta.max_value > 0:
            raise ValueError(
                "warm_start.epochs > 0 needs full fine-tuning when β > 0: a LoRA policy's reference is its base model "
                "(adapters off), which cannot become the warm-started policy"
            )
        self._warm_reference: dict[str, torch.Tensor] | None = None
        """The KL reference's weights after a warm start, from the checkpoint of a resumed run."""
        self.loss_fn = make_loss(grpo.loss, grpo.epsilon_low, grpo.epsilon_high)
        self.advantage_fn = make_advantage(grpo.advantage)
        self.credit_fn = make_credit(grpo.credit)
        self.beta_schedule = grpo.beta
        self.policy: torch.nn.Module | None = None
        self._reference: list[torch.nn.Module] = []  # a list keeps the frozen copy out of state_dict and optimizer
        self._val_rows: list[ValidationRow] = []
        self.held_out_rows: list[ValidationRow] = []
        """The last validation pass's rows, every rank's (the tool breakdown reads them)."""
        self.held_out: list[HeldOutResult] = []
        self.held_out_also: dict[str, list[HeldOutResult]] = {name: [] for name in validation.also_readouts}
        """Per extra readout (``validation.also_readouts``), its result of every validation pass."""
        self._engine_seed_offset: int | None = None
        self.engine: Engine | None = None
        self._engine_step: int | None = 0
        """The optimizer step whose policy weights the engine holds; None = other weights than the policy's. 0 at
        first: the engine loads the checkpoint the policy starts from."""
        self.zero3: dict | None = None
        """The DeepSpeed config when training under ZeRO-3 (partitioned parameters), else None."""
        self._hf_zero3 = None  # under ZeRO-3: the HfDeepSpeedConfig that must outlive every from_pretrained

    # ----------------------------------------------------------------------------------------------- setup
    def setup(self, stage: str) -> None:
        # the first hook before Lightning formats a DeepSpeed config (model_sharded_context, around configure_model)
        deepspeed_settings(self._trainer, self.optim.grad_clip)

    def configure_model(self) -> None:
        """Load the policy (+ reference). Idempotent (Lightning calls it per stage). The engine is not built here:
        Lightning runs this hook inside ``strategy.tensor_init_context()`` and ``model_sharded_context()``
        (``lightning/pytorch/trainer/call.py`` ``_call_configure_model``): a default-device context, and under ZeRO-3
        ``deepspeed.zero.Init``, which would partition vLLM's own modules."""
        if self.policy is not None:
            return
        self.zero3 = zero3_config(self._trainer)
        if self.zero3 is not None:
            world = self._trainer.world_size
            check_zero3_setup(self.rollout_config.engine.name, self.validation_config.readout, world)
            check_zero3_dtype(self.zero3, self.policy_config.dtype)
            self._hf_zero3 = hf_zero3_loading(self.zero3)
        self.policy, self.processor = load_policy(self.policy_config)
        self.policy.train()  # from_pretrained returns eval mode; rollouts switch to eval and back themselves
        if self.policy_config.random_init:
            self._engine_step = None  # the engine loads the directory's weights, not these random ones
        if self.beta_schedule.max_value > 0:
            reference = make_reference(self.policy, self.policy_config, zero3=self.zero3 is not None)
            self._reference = [] if reference is None else [reference]
        self.pad_id = self.processor.tokenizer.pad_token_id

    def setup_engine(self) -> None:
        """Build the rollout engine, the Agent and the assessor once (after ``configure_model``, outside Lightning's
        init contexts: ``on_fit_start``, or the first validation of a ``validate`` run)."""
        if self.engine is not None:
            return
        if zero_init_active():
            raise RuntimeError(
                "GRPOModule.setup_engine: deepspeed.zero.Init is active, it would partition the engine's modules; "
                "build the engine outside configure_model"
            )
        self.engine = self.build_engine()
        self.agent = Agent(self.engine, self.processor, self.rollout_config.protocol)
        self.assessor = AgentAssessor(
            self.agent,
            self.validation_config.sampling,
            samples=self.validation_config.samples,
            readout=self.validation_config.readout,
            model=self.policy,
            also_readouts=self.validation_config.also_readouts,
        )
        self._restore_engine_seed()  # a checkpoint loaded before the engine existed

    def prepare_data(self) -> None:
        # Build the tiny kit once per node, outside any ZeRO-3 partitioning context (configure_model runs inside one).
        if self.policy_config.tiny is not None:
            from tooliqa_agent.tiny_model import ensure_tiny_qwen3vl

            ensure_tiny_qwen3vl(self.policy_config.path, self.policy_config.tiny)

    def build_engine(self) -> Engine:
        """The rollout engine named in the config (``hf`` shares this policy object; ``vllm`` loads the checkpoint)."""
        config = self.rollout_config.engine
        if config.model is None:
            config = dataclasses.replace(config, model=self.policy_config.path)
        return make_engine(config, model=self.policy, processor=self.processor)

    def on_fit_start(self) -> None:
        if self.zero3 is not None and self._reference:  # after deepspeed.init_distributed: the engine can be built
            self._reference = [wrap_reference(self._reference[0], self.zero3)]  # DeepSpeed places it
        else:
            for reference in self._reference:
                reference.to(self.device)
        self.setup_engine()

    def on_validation_start(self) -> None:
        self.sync_engine()  # the sanity check of a resumed run is the engine's first use

    def on_train_start(self) -> None:
        self.sync_engine()
        if self.warm_start.epochs > 0:
            self.start_warm()

    def start_warm(self) -> None:
        """Run the warm start before step 0 and make the reference the warm policy (a resumed run: the
        checkpoint's), then score the held-out set once more: the numbers GRPO starts from."""
        if self.global_step > 0:
            if self._warm_reference is not None and self._reference:
                self._reference[0].load_state_dict(self._warm_reference)
            self._warm_reference = None
            return
        report = run_warm_start(self, self.warm_start)
        rank_zero_info(report.summary())
        datamodule = self.trainer.datamodule
        if getattr(datamodule, "val_items", None):  # a pass outside Lightning's loop, printed and logged the same way
            for batch in datamodule.val_dataloader():
                self.validation_step(datamodule.transfer_batch_to_device(batch, self.device, 0), 0)
            self.on_validation_epoch_end()
            self.policy.train()

    def sync_engine(self) -> None:
        """Build the engine if needed and push the policy's weights unless it already holds them: after a checkpoint
        load (under DeepSpeed restored only after ``on_fit_start``) or a random init it holds the directory's."""
        self.setup_engine()
        if self._engine_step != self.global_step:
            self.push_weights()

    def push_weights(self) -> None:
        """Stream the policy's weights into the engine (a no-op read for ``hf``, which shares the policy)."""
        # closing(): the stream's unmerge / gathers end here even if an engine stops reading early
        with closing(engine_weights(self.policy, zero3=self.zero3 is not None)) as weights:
            self.engine.update_weights(weights)
        self._engine_step = self.global_step

    def configure_optimizers(self):
        params = [p for p in self.policy.parameters() if p.requires_grad]
        o = self.optim
        optimizer = torch.optim.AdamW(params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
        total = max(1, self.trainer.max_steps)
        lr_lambda = make_lr_lambda(o.schedule, total, o.warmup_ratio)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ----------------------------------------------------------------------------------------------- training
    def training_step(self, batch: ImageBatch, batch_idx: int) -> None:
        beta = self.beta_schedule(self.global_step)
        timer = StepTimer()
        with timer("rollout"):
            groups = self.rollout(batch)
            self.engine.release()  # vLLM sleeps through the update; the push below wakes its weights only
        with timer("rewards"):
            rewards = self.score(groups, batch)
        advantages = self.advantage_fn(rewards.total.to(torch.float32))  # [B, G]
        token_advantages = self.credit_fn(groups, advantages, self.processor.tokenizer)  # [B·G] of [L]
        trajectories = [t for group in groups for t in group]
        loss_stats = self.update(trajectories, token_advantages, beta, timer)
        with timer("sync"):
            self.push_weights()
        self.log_step(trajectories, rewards, loss_stats, timer)

    @torch.no_grad()
    def rollout(
        self, batch: ImageBatch, group_size: int | None = None, seed_step: int | None = None, agent: Agent | None = None
    ) -> list[list[Trajectory]]:
        """``[B][G]`` trajectories, sampled in eval mode with a seed derived from the step (reproducible on resume);
        ``group_size``, ``seed_step`` and ``agent`` default to the rollout's G, the optimizer step and the module's
        agent (the warm start's scripted actions bring their own)."""
        step = self.global_step if seed_step is None else seed_step
        sampling = dataclasses.replace(
            self.rollout_config.sampling, seed=self.rollout_config.sampling.seed + 1_000_003 * step
        )
        self.policy.eval()
        try:
            agent = agent or self.agent
            return agent.rollout(list(batch.images), group_size or self.rollout_config.group_size, sampling)
        except ValueError as err:  # an image the processor refuses (e.g. an extreme aspect ratio): name its file
            raise ValueError(f"training step {self.global_step}: {batch.name_the_image(str(err))}") from None
        finally:
            self.policy.train()

    def score(self, groups: list[list[Trajectory]], batch: ImageBatch) -> RewardOutput:
        """Rank + format + BATE rewards of this rank's ``[B, G]`` trajectories, ranked over the global batch."""
        datasets = [item.dataset for item in batch.items]
        inputs = reward_inputs(groups, batch.mos, self.rollout_config.protocol, datasets=datasets)
        return score_global_batch(inputs, self.reward_config)

    def update(
        self, trajectories: list[Trajectory], advantages: list[torch.Tensor], beta: float, timer: StepTimer
    ) -> LossStats:
        """``inner_updates`` optimizer steps on the rollout batch; returns the loss stats averaged over micro-batches.

        Args:
            trajectories: the B·G trajectories, row-major.
            advantages: ``[B·G]`` of float ``[L]``: each trajectory's per-token advantages (``tooliqa_trainer.credit``).
            beta: KL coefficient of this step.
            timer: accumulates ``old_logprobs`` / ``ref_logprobs`` / ``update`` seconds.
        """
        temperature = self.rollout_config.sampling.logprob_temperature
        old = ref = None
        # One update per rollout: π_old is the policy itself, so the loss uses the detached current log-probs (ratio
        # exactly 1, as TRL) and no extra forward is needed.
        if self.grpo.recompute_old_logprobs and self.grpo.inner_updates > 1:
            with timer("old_logprobs"):
                old = frozen_logprobs(self.policy, trajectories, *self._frozen_args(temperature))
        if beta > 0:
            with (
                timer("ref_logprobs"),
                reference_mode(self.policy, self._reference[0] if self._reference else None) as model,
            ):
                ref = frozen_logprobs(model, trajectories, *self._frozen_args(temperature))
        with timer("update"):
            return self._optimize(trajectories, advantages, old, ref, beta, temperature)

    def _frozen_args(self, temperature: float) -> tuple:
        return self.processor, self.pad_id, self.grpo.micro_batch_size, self.device, temperature

    def _optimize(self, trajectories, advantages, old, ref, beta: float, temperature: float) -> LossStats:
        """The inner loop: epochs × minibatches optimizer steps, each accumulating over micro-batches."""
        optimizer, scheduler = self.optimizers(), self.lr_schedulers()
        stats: list[LossStats] = []
        for _ in range(self.grpo.ppo_epochs):
            for minibatch in chunks(range(len(trajectories)), self.grpo.minibatches, by_count=True):
                optimizer.zero_grad()
                micro_batches = list(chunks(minibatch, self.grpo.micro_batch_size))
                for k, micro in enumerate(micro_batches):
                    accumulation_boundary(self.trainer, k == len(micro_batches) - 1)
                    policy_batch = collate([trajectories[i] for i in micro], self.processor, self.pad_id).to(
                        self.device
                    )
                    logprobs = token_logprobs(
                        self.policy, policy_batch.model_inputs(), policy_batch.input_ids, temperature
                    )
                    length = logprobs.shape[1]
                    if old is not None:
                        old_logprobs = pad_rows([old[i] for i in micro], length)
                    elif self.grpo.recompute_old_logprobs:
                        old_logprobs = logprobs.detach()
                    else:
                        old_logprobs = policy_batch.old_logprobs
                    loss, micro_stats = self.loss_fn(
                        logprobs,
                        old_logprobs,
                        pad_rows([advantages[i] for i in micro], length).to(self.device),
                        policy_batch.loss_mask,
                        ref_logprobs=pad_rows([ref[i] for i in micro], length) if ref is not None else None,
                        beta=beta,
                    )
                    self.manual_backward(loss * len(micro) / len(minibatch))
                    stats.append(micro_stats)
                if self.optim.grad_clip > 0:
                    self.clip_gradients(
                        optimizer, gradient_clip_val=self.optim.grad_clip, gradient_clip_algorithm="norm"
                    )
                optimizer.step()
                scheduler.step()
        return LossStats.mean(stats)

    def log_step(
        self, trajectories: list[Trajectory], rewards: RewardOutput, loss: LossStats, timer: StepTimer
    ) -> None:
        """One flat dict per step: rewards, ρ, tool calls, β, KL, ratio/clip, lengths, parse failures, timings.

        Every value describes the GLOBAL batch: each rank logs its share and Lightning reduces them over ranks
        (``sync_dist``; a mean of equal-sized shares is the batch mean, the longest response a max), so the keys must
        be the same on every rank — every enabled tool's count is logged, 0 where this rank called none."""
        n = len(trajectories)
        lr = self.lr_schedulers().get_last_lr()[0]
        metrics = step_metrics(trajectories, rewards, loss, timer.seconds, lr, self.agent.toolkit.names)
        self.log_dict(metrics, batch_size=n, sync_dist=True)
        longest = max(t.num_output_tokens for t in trajectories)
        self.log("train/response_tokens/max", float(longest), batch_size=n, sync_dist=True, reduce_fx="max")
        progress = {"reward": metrics["train/reward/total"], "beta": loss.beta}
        if self.rollout_config.protocol.tools_on:  # the tool-use rate BATE shapes, and calls per image
            progress.update(rho=rewards.stats.rho, calls=metrics["train/tool_calls/successful"])
        self.log_dict(progress, prog_bar=True, logger=False, batch_size=n, sync_dist=True)

    # ----------------------------------------------------------------------------------------------- validation
    def validation_step(self, batch: ImageBatch, batch_idx: int) -> None:
        self.policy.eval()
        assessments = self.assessor(batch.items, batch.images)
        subsets = getattr(self.trainer.datamodule, "subsets", None) or {}
        for item, assessment, mos in zip(batch.items, assessments, batch.mos.tolist()):
            tools = tuple(call.name for call in assessment.tool_calls if call.ok)
            subset = subsets.get(Path(item.image).resolve())
            self._val_rows.append(ValidationRow(assessment.score, float(mos), subset, tools, assessment.other_scores))

    def on_validation_epoch_end(self) -> None:
        rows = [row for part in every_rank(self._val_rows) for row in part]  # each rank scored its own share
        self._val_rows = []
        self.held_out_rows = rows
        failure_score = self.validation_config.failure_score
        result = held_out_result([(row.score, row.mos) for row in rows], self.global_step, failure_score)
        self.held_out.append(result)
        summary = result.summary()
        for name, results in self.held_out_also.items():
            pairs = [(dict(row.other_scores).get(name), row.mos) for row in rows]
            results.append(held_out_result(pairs, self.global_step, failure_score))
            summary += f"  | {name} readout: SRCC {results[-1].srcc:.3f}  PLCC {results[-1].plcc:.3f}"
        metrics = result.log("val")
        for name, results in self.held_out_also.items():
            metrics.update(results[-1].log(f"val_{name}"))
        self._log_held_out(metrics)
        rank_zero_info(summary)

    def _log_held_out(self, metrics: dict[str, float]) -> None:
        """Log at the optimizer step the console prints, the step-0 pass included: Lightning's own step for
        validation metrics is its batch counter (39 at step 40), and it drops what the sanity check logs."""
        if self.trainer.is_global_zero:
            for logger in self.loggers:
                logger.log_metrics(metrics, step=self.global_step)
        if not self.trainer.sanity_checking:
            self.log_dict(metrics, logger=False, rank_zero_only=True)  # callback_metrics, e.g. a checkpoint monitor

    def on_fit_end(self) -> None:
        if len(self.held_out) >= 2:
            readouts = [(self.validation_config.readout, self.held_out), *self.held_out_also.items()]
            for name, results in readouts:
                rank_zero_info(held_out_change(results, name))

    # ----------------------------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Plain types only, so resuming works with torch.load(weights_only=True), Lightning's default.
        checkpoint["hyper_parameters"] = plain(dict(self.hparams))
        if self.warm_start.epochs > 0 and self._reference:  # not the initial checkpoint's: a resume needs it
            checkpoint["warm_reference"] = self._reference[0].state_dict()
        # Per rank: ranks sample different numbers of tokens, turns and requests, and only rank 0's checkpoint dict
        # is written (every rank builds it, so the gathers are safe here). The engine's per-call seed counter: without
        # it a resumed run would replay the seeds of its first steps.
        checkpoint["rng"] = every_rank(rng_state())
        checkpoint["engine_seed_offset"] = every_rank(getattr(self.engine, "seed_offset", None))

    def _restore_engine_seed(self) -> None:
        engine = getattr(self, "engine", None)
        if self._engine_seed_offset is not None and hasattr(engine, "seed_offset"):
            engine.seed_offset = self._engine_seed_offset
            self._engine_seed_offset = None

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._engine_step = None  # the policy gets the checkpoint's weights: push them before the engine is used
        saved = checkpoint.get("engine_seed_offset")
        self._engine_seed_offset = own_entry(saved, self.global_rank, self.trainer.world_size)
        self._restore_engine_seed()
        self._warm_reference = checkpoint.get("warm_reference")
        restore_rng(rank_rng_state(checkpoint.get("rng"), self.global_rank, self.trainer.world_size))
