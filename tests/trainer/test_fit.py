"""End-to-end CPU fits on the tiny kit: parameters change, β switches at its step, checkpoints resume exactly, and a
seeded bandit really learns. One pytest process (``import lightning`` costs ~15 s)."""

from __future__ import annotations

import dataclasses

import lightning as L
import pytest
import torch
from transformers import AutoModelForImageTextToText

from tooliqa_agent.engines.scripted import ScriptedEngine
from tooliqa_agent.prompts import PromptConfig
from tooliqa_agent.protocol import ProtocolConfig
from tooliqa_agent.types import EngineConfig, SamplingConfig
from tooliqa_rewards import RewardConfig, RewardWeights
from tooliqa_trainer import (
    DatasetSpec,
    ExportHF,
    GRPOConfig,
    GRPOModule,
    IQADataModule,
    OptimConfig,
    PolicyConfig,
    RolloutConfig,
    TorchThreads,
)
from tooliqa_trainer.datamodule import plan_batch
from tooliqa_trainer.schedule import constant_with_warmup

SHORT_PROMPT = PromptConfig(single_turn="Rate this image from 1 to 5.")
PROTOCOL = ProtocolConfig(tools="none", rubric=False, prompts=SHORT_PROMPT)


class ScriptedModule(GRPOModule):
    """Rollouts from the scripted engine: trajectory k of every image answers a different score."""

    def build_engine(self):
        def reply(request):
            return f"<thinking>ok</thinking> <answer>{1.5 + request.trajectory % 4}</answer>"

        return ScriptedEngine(self.processor, reply)


class Recorder(L.Callback):
    """(global_step, β, lr, data step) at the start of every training batch."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, float, float, int]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        self.rows.append((trainer.global_step, pl_module.beta_schedule(trainer.global_step), lr, batch.step))


def _data(root, batch_size=2, steps=5, seed=3):
    return IQADataModule(
        train=[DatasetSpec("csv", str(root / "train"))],
        val=[DatasetSpec("csv", str(root / "held_out"))],
        batch_size=batch_size,
        val_batch_size=10,
        steps=steps,
        seed=seed,
    )


def _trainer(tmp_path, max_steps, callbacks=(), **kwargs):
    return L.Trainer(
        accelerator="cpu",
        max_steps=max_steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=tmp_path,
        callbacks=[TorchThreads(1), *callbacks],
        **kwargs,
    )


def _params(module):
    return {name: p.detach().clone() for name, p in module.policy.named_parameters()}


def test_fit_three_steps_switches_beta_checkpoints_and_resumes(tiny_model_dir, synthetic_root, tmp_path):
    grpo = GRPOConfig(kl_schedule=((0, 0.01), (2, 0.02), (4, 0.03)), micro_batch_size=4)
    optim = OptimConfig(lr=1e-3, warmup_ratio=0.4)
    kwargs = dict(
        policy=PolicyConfig(path=str(tiny_model_dir), dtype="float32"),
        rollout=RolloutConfig(group_size=4, protocol=PROTOCOL, engine=EngineConfig(name="scripted")),
        grpo=grpo,
        optim=optim,
    )
    first = Recorder()
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, save_top_k=0)
    module = ScriptedModule(**kwargs)
    export = ExportHF(str(tmp_path / "hf"))
    trainer = _trainer(tmp_path, 3, [first, checkpoint, export])
    module.configure_model()
    before = _params(module)
    trainer.fit(module, datamodule=_data(synthetic_root))
    after = _params(module)
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert trainer.global_step == 3
    assert len(changed) > len(before) // 2, "a fit must update the policy"
    # β: 0.01 for steps 0-1, 0.02 from step 2 exactly; lr: linear warmup over ceil(0.4 * 3) = 2 steps.
    assert [row[1] for row in first.rows] == [0.01, 0.01, 0.02]
    assert [row[2] for row in first.rows] == pytest.approx([1e-3 * constant_with_warmup(s, 3, 0.4) for s in range(3)])
    assert [row[3] for row in first.rows] == [0, 1, 2]
    last = tmp_path / "ckpt" / "last.ckpt"
    assert last.is_file()
    exported = AutoModelForImageTextToText.from_pretrained(tmp_path / "hf", dtype=torch.float32)
    assert all(torch.equal(p, after[name]) for name, p in exported.named_parameters())  # the trained weights

    resumed = Recorder()
    module2 = ScriptedModule(**kwargs)
    trainer2 = _trainer(tmp_path, 5, [resumed])
    trainer2.fit(module2, datamodule=_data(synthetic_root), ckpt_path=last)
    assert trainer2.global_step == 5
    # Continues at step 3 with the schedule's β and lr, and the next batch of the data plan.
    assert [row[0] for row in resumed.rows] == [3, 4]
    assert [row[1] for row in resumed.rows] == [0.02, 0.03]
    assert [row[2] for row in resumed.rows] == pytest.approx([1e-3, 1e-3])
    assert [row[3] for row in resumed.rows] == [3, 4]
    resumed_weights = {name: p for name, p in module2.policy.named_parameters()}
    assert any(not torch.equal(after[name], resumed_weights[name]) for name in after)


def test_data_plan_is_deterministic_and_walks_epochs_without_repeats():
    sizes = [10]
    seen = [i for step in range(5) for i in plan_batch(sizes, step, 2, seed=7)[1]]
    assert sorted(seen) == list(range(10)), "one epoch covers every item once"
    assert plan_batch(sizes, 3, 2, 7) == plan_batch(sizes, 3, 2, 7)
    mixed = [plan_batch([30, 10], step, 4, 1)[0] for step in range(200)]
    assert 0.6 < mixed.count(0) / 200 < 0.9, "datasets are drawn in proportion to their size"


class BanditModule(GRPOModule):
    """Reward = the sampled score itself (a bandit that prefers high scores), through the real rollout and update."""

    def score(self, groups, batch):
        rewards = super().score(groups, batch)
        scores = torch.tensor([[t.score if t.score is not None else 0.0 for t in g] for g in groups])
        return dataclasses.replace(rewards, total=scores)


def test_seeded_bandit_mean_sampled_score_rises(tiny_model_dir, synthetic_root, tmp_path):
    L.seed_everything(0)
    module = BanditModule(
        policy=PolicyConfig(path=str(tiny_model_dir), dtype="float32"),
        rollout=RolloutConfig(
            group_size=4,
            engine=EngineConfig(name="hf", device="cpu"),
            sampling=SamplingConfig(temperature=1.0, max_new_tokens=160, seed=0),
            protocol=dataclasses.replace(PROTOCOL, structured=True),
        ),
        grpo=GRPOConfig(kl_schedule=((0, 0.0),), micro_batch_size=8),
        optim=OptimConfig(lr=3e-3, warmup_ratio=0.0),
        rewards=RewardConfig(weights=RewardWeights(format=0.0, bate=0.0)),
    )
    means: list[float] = []

    class Scores(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            means.append(trainer.callback_metrics["train/score_mean"].item())

    trainer = _trainer(tmp_path, 20, [Scores()])
    trainer.fit(module, datamodule=_data(synthetic_root, batch_size=2, steps=20))
    early, late = sum(means[:4]) / 4, sum(means[-4:]) / 4
    assert late > early + 0.5, f"mean sampled score did not rise: {[round(m, 2) for m in means]}"


def test_resumed_hf_run_matches_an_uninterrupted_one(tiny_model_dir, synthetic_root, tmp_path):
    """Real sampling (hf engine): 1 step + resume 1 step gives bit-identical weights to 2 uninterrupted steps, so
    the engine's seed counter, the optimizer, the schedule and the data position all come back from the checkpoint."""
    kwargs = dict(
        policy=PolicyConfig(path=str(tiny_model_dir), dtype="float32"),
        rollout=RolloutConfig(
            group_size=2,
            protocol=PROTOCOL,
            engine=EngineConfig(name="hf", device="cpu"),
            sampling=SamplingConfig(temperature=1.0, max_new_tokens=12, seed=5),
        ),
        grpo=GRPOConfig(kl_schedule=((0, 0.01),), micro_batch_size=4),
        optim=OptimConfig(lr=1e-3, warmup_ratio=0.0),
    )
    straight = GRPOModule(**kwargs)
    _trainer(tmp_path / "straight", 2).fit(straight, datamodule=_data(synthetic_root))

    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, save_top_k=0)
    first = GRPOModule(**kwargs)
    _trainer(tmp_path / "first", 1, [checkpoint]).fit(first, datamodule=_data(synthetic_root))
    assert first.engine.seed_offset > 0
    resumed = GRPOModule(**kwargs)
    _trainer(tmp_path / "resumed", 2).fit(
        resumed, datamodule=_data(synthetic_root), ckpt_path=tmp_path / "ckpt" / "last.ckpt"
    )
    assert resumed.engine.seed_offset == straight.engine.seed_offset
    want, got = _params(straight), _params(resumed)
    assert all(torch.equal(want[name], got[name]) for name in want)
