"""The demo's Tool-IQA mechanics on CPU, fast: tool views from the full-resolution original reach the policy's
inputs, BATE rewards tool trajectories, ρ and per-tool calls are logged, and the held-out Table-6 breakdown and the
curves PNG are written (the learning itself is measured by the demo run, not here)."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from tooliqa_agent.collate import collate
from tooliqa_agent.engines.scripted import ScriptedEngine
from tooliqa_agent.grammar import GrammarConfig
from tooliqa_agent.prompts import PromptConfig
from tooliqa_agent.protocol import ProtocolConfig
from tooliqa_agent.types import EngineConfig
from tooliqa_rewards import RewardConfig
from tooliqa_trainer import (
    GRPOConfig,
    GRPOModule,
    HiddenEvidenceSpec,
    IQADataModule,
    OptimConfig,
    PolicyConfig,
    RolloutConfig,
    ToolReport,
    TorchThreads,
)
from tooliqa_trainer.tool_report import ValidationRow, call_selectivity, draw_curves, tool_breakdown

from ._turns import GAMMA, MAGNIFY, RUBRIC


def _reply(request) -> str:
    """Trajectory k: k % 4 == 0 magnifies, 1 brightens, the rest answer at once; scores differ per trajectory."""
    if request.kind == "rubric":
        return RUBRIC
    if request.turn == 1 and request.trajectory % 4 in (0, 1):
        return MAGNIFY if request.trajectory % 4 == 0 else GAMMA
    return f"<thinking></thinking> <answer>{1 + request.trajectory % 5}</answer>"


class ScriptedToolModule(GRPOModule):
    """The demo's module with scripted turns; keeps each step's groups and rewards for the assertions."""

    steps: list = []

    def build_engine(self):
        return ScriptedEngine(self.processor, _reply)

    def score(self, groups, batch):
        rewards = super().score(groups, batch)
        self.steps.append((groups, rewards, list(batch.images)))
        return rewards


def test_two_scripted_steps_show_the_tools_at_work(demo_kit, tmp_path):
    protocol = ProtocolConfig(
        tools="both",
        rubric=True,
        grammar=GrammarConfig(max_thinking_chars=0, max_note_chars=1, score_decimals=0),
        prompts=PromptConfig(rubric="Assess the image.", gate="Answer, or call one tool."),
    )
    module = ScriptedToolModule(
        policy=PolicyConfig(path=str(demo_kit), dtype="float32", freeze_vision=True),
        rollout=RolloutConfig(group_size=4, protocol=protocol, engine=EngineConfig(name="scripted")),
        grpo=GRPOConfig(loss="gspo", kl_schedule=((0, 1.0),), micro_batch_size=16),
        optim=OptimConfig(lr=1e-3, warmup_ratio=0.0),
        rewards=RewardConfig(),
    )
    metrics: list[dict[str, float]] = []

    class Metrics(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            metrics.append({k: float(v) for k, v in trainer.callback_metrics.items()})

    spec = HiddenEvidenceSpec(out_dir=str(tmp_path / "hidden"), train_references=1, held_out_references=1)
    data = IQADataModule(hidden_evidence=spec, batch_size=4, val_batch_size=20, steps=2, seed=0)
    report = ToolReport(out_dir=str(tmp_path / "run"))
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=2,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        val_check_interval=2,
        default_root_dir=tmp_path,
        callbacks=[TorchThreads(1), Metrics(), report],
    )
    trainer.fit(module, datamodule=data)

    groups, rewards, images = module.steps[0]
    # tool views reach the model's inputs: magnified from the full-resolution original, then collated
    magnified = next(t for g in groups for t in g if t.turns[1].tool_ok and t.turns[1].call.name == "magnifier")
    original = images[magnified.image_index]
    view = magnified.images[1]
    box = magnified.turns[1].view.box
    assert box == (0, 0, original.shape[2] // 2, original.shape[1] // 2)  # half of the ORIGINAL's pixels
    assert view.shape[1] * view.shape[2] <= 4096
    batch = collate([magnified], module.processor, module.pad_id)
    assert batch.model_inputs()["image_grid_thw"].shape[0] == 2  # the global view and the tool view
    assert int(batch.model_inputs()["mm_token_type_ids"].sum()) == sum(
        (v.shape[1] // 32) * (v.shape[2] // 32) for v in magnified.images
    )
    # BATE is paid to trajectories with a successful call, and only to them
    used = torch.tensor([[t.num_successful_calls > 0 for t in g] for g in groups])
    assert used.any() and (~used).any()
    assert torch.all(rewards.bate[~used] == 0) and torch.any(rewards.bate[used] != 0)
    # ρ and per-tool calls are logged every step (6 of 16 trajectories call: 4 magnify, 4 brighten; B = 4, G = 4)
    for step in metrics:
        assert step["train/reward/rho"] == pytest.approx(0.5)
        assert step["train/tool_calls/magnifier"] == pytest.approx(0.25)
        assert step["train/tool_calls/gamma_corrector"] == pytest.approx(0.25)
        assert step["rho"] == pytest.approx(0.5)
    # the held-out breakdown (paper Table 6 per subset) and the curves are written
    table = (tmp_path / "run" / "tools.md").read_text()
    assert "| tool-free |" in table and "scale_hidden" in table and "on_target/magnifier" in table
    png = (tmp_path / "run" / "curves.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert {row.subset for row in module.held_out_rows} == {"plain", "exposure_hidden", "scale_hidden"}


def test_breakdown_and_selectivity_by_hand(tmp_path):
    rows = [
        ValidationRow(4.0, 4.2, "plain", ()),
        ValidationRow(3.0, 3.4, "plain", ()),
        ValidationRow(1.0, 1.0, "plain", ("magnifier",)),
        ValidationRow(2.0, 2.6, "exposure_hidden", ("gamma_corrector",)),
        ValidationRow(3.5, 1.8, "exposure_hidden", ("gamma_corrector",)),
        ValidationRow(None, 4.2, "scale_hidden", ("magnifier",)),
    ]
    table = tool_breakdown(rows)
    lines = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()[2:]}
    assert "100% (n=6)" in lines["all images"]
    assert "33% (n=2)" in lines["gamma_corrector"] and "100% (n=2)" in lines["gamma_corrector"]
    assert lines["tool-free"].startswith("| tool-free | 33% (n=2), — | 0% (n=0), — | 67% (n=2), —")  # too few: —
    selectivity = call_selectivity(rows)
    assert selectivity["on_target/gamma_corrector"] == 1.0
    assert selectivity["on_target/magnifier"] == 0.5
    assert selectivity["rate/plain"] == pytest.approx(1 / 3) and selectivity["rate/scale_hidden"] == 1.0
    assert math.isnan(call_selectivity(rows[:2])["on_target/magnifier"])
    path = draw_curves(tmp_path / "c.png", [(0, 0.1, 0.2), (40, 0.5, 0.6)], [(0, 0.2), (1, 0.4)])
    assert path.read_bytes().startswith(b"\x89PNG")
