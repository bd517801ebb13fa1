"""The warm start (``tooliqa_trainer.warm_start``): its targets, its loss, and a real fit with it — the supervised
pass runs before step 0, the held-out set is scored after it, the KL reference becomes the warm policy, and a resumed
run gets that reference back from the checkpoint instead of warm-starting again."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from tooliqa_agent.collate import collate
from tooliqa_agent.engines.scripted import ScriptedEngine
from tooliqa_agent.grammar import GrammarConfig
from tooliqa_agent.prompts import PromptConfig
from tooliqa_agent.protocol import ProtocolConfig
from tooliqa_agent.types import EngineConfig, SamplingConfig
from tooliqa_trainer import (
    DatasetSpec,
    GRPOConfig,
    GRPOModule,
    IQADataModule,
    OptimConfig,
    PolicyConfig,
    RolloutConfig,
    ToolReport,
)
from tooliqa_trainer.readout import leading_digit_position
from tooliqa_trainer.warm_start import WarmStartConfig, digit_targets, score_cross_entropy

PROTOCOL = ProtocolConfig(
    tools="none",
    rubric=False,
    structured=True,  # the random model answers in format only under the grammar
    grammar=GrammarConfig(max_thinking_chars=0, max_gap_chars=0, score_decimals=0),
    prompts=PromptConfig(single_turn="Rate this image from 1 to 5."),
)
DIGITS = [1, 2, 3, 4, 5]


def test_targets_have_the_mos_as_expectation():
    mos = torch.tensor([1.0, 1.8, 2.6, 3.33, 4.2, 5.0, 0.2, 7.0])
    targets = digit_targets(mos, (1.0, 5.0), DIGITS)
    assert torch.allclose(targets.sum(-1), torch.ones(8))
    expected = (targets * torch.tensor(DIGITS, dtype=torch.float32)).sum(-1)
    assert torch.allclose(expected, mos.clamp(1.0, 5.0), atol=1e-6)  # outside the range: clamped
    assert int((targets > 0).sum(-1).max()) <= 2
    # another label range maps linearly: 0..100 onto 1..5
    assert torch.allclose(
        (digit_targets(torch.tensor([50.0]), (0.0, 100.0), DIGITS) * torch.arange(1, 6)).sum(), torch.tensor(3.0)
    )


def test_cross_entropy_reads_the_score_digit_where_it_was_written(demo_kit):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from tooliqa_agent import Agent

    processor = AutoProcessor.from_pretrained(demo_kit)
    model = AutoModelForImageTextToText.from_pretrained(demo_kit, dtype=torch.float32)
    replies = ["<think></think> <answer>4</answer>", "<think></think> <answer>no score</answer>"]
    agent = Agent(ScriptedEngine(processor, lambda r: replies[r.trajectory]), processor, PROTOCOL)
    image = (torch.rand(3, 64, 64) * 255).to(torch.uint8)
    trajectories = agent.rollout([image], 2, SamplingConfig(max_new_tokens=20))[0]
    targets = digit_targets(torch.tensor([3.5, 3.5]), (1.0, 5.0), DIGITS)
    loss, scored, _ = score_cross_entropy(model, trajectories, targets, processor, DIGITS, temperature=0.5)
    assert scored == 1  # the unparsable answer carries no loss
    # by hand: the full forward's logits before the digit, over the five digits, temperature-scaled
    good = trajectories[0]
    position = leading_digit_position(good, processor.tokenizer)
    batch = collate([good], processor, processor.tokenizer.pad_token_id)
    logits = model(**batch.model_inputs(), use_cache=False).logits[0, position - 1]
    ids = [processor.tokenizer.convert_tokens_to_ids(str(d)) for d in DIGITS]
    want = -(targets[0] * (logits[ids] / 0.5).log_softmax(-1)).sum()
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    # nothing to score: a zero loss that still reaches every weight (DDP waits for every gradient)
    model.zero_grad(set_to_none=True)
    zero, scored, _ = score_cross_entropy(model, trajectories[1:], targets[1:], processor, DIGITS, temperature=0.5)
    zero.backward()
    assert scored == 0 and zero.item() == 0.0
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters() if p.requires_grad)


def _module(path, epochs=2):
    return GRPOModule(
        policy=PolicyConfig(path=str(path), dtype="float32", freeze_vision=True),
        rollout=RolloutConfig(
            group_size=2,
            protocol=PROTOCOL,
            engine=EngineConfig(name="hf", device="cpu"),
            sampling=SamplingConfig(temperature=1.0, max_new_tokens=40, seed=5),
        ),
        grpo=GRPOConfig(kl_schedule=((0, 0.5),), micro_batch_size=8),
        optim=OptimConfig(lr=1e-3, warmup_ratio=0.0),
        warm_start=WarmStartConfig(epochs=epochs, group_size=2, batch_size=4, lr=3e-3),
    )


def _fit(module, root, tmp_path, steps, callbacks=(), ckpt_path=None):
    data = IQADataModule(
        train=[DatasetSpec("csv", str(root / "train"))],
        val=[DatasetSpec("csv", str(root / "held_out"))],
        batch_size=2,
        val_batch_size=8,
        steps=steps,
        seed=3,
    )
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=-1,
        limit_val_batches=1.0,
        val_check_interval=1,
        default_root_dir=tmp_path,
        callbacks=list(callbacks),
    )
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    return trainer


class ReferenceAtStart(L.Callback):
    """The KL reference's and the policy's weights when step 0 (or the first resumed step) begins."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if not hasattr(self, "reference"):
            self.reference = {k: v.clone() for k, v in pl_module._reference[0].state_dict().items()}
            self.policy = {k: v.clone() for k, v in pl_module.policy.state_dict().items()}


def test_a_fit_warm_starts_before_step_zero_and_resumes_with_the_warm_reference(demo_kit, synthetic_root, tmp_path):
    seen = ReferenceAtStart()
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, save_top_k=0)
    report = ToolReport(out_dir=str(tmp_path / "report"))
    first = _module(demo_kit)
    _fit(first, synthetic_root, tmp_path / "first", 1, [seen, checkpoint, report])
    # the held-out set is scored before training, after the warm start, and at the end; the curves show all three
    assert [r.step for r in first.held_out] == [0, 0, 1]
    assert [point[0] for point in report.held_out] == [0, 0, 1]
    # step 0 starts from the warm policy, and the reference is that very policy (not the initial checkpoint)
    from transformers import AutoModelForImageTextToText

    start = AutoModelForImageTextToText.from_pretrained(demo_kit, dtype=torch.float32).state_dict()
    language = [k for k in seen.policy if "language_model" in k and k in start]
    assert any(not torch.equal(seen.policy[k], start[k]) for k in language)
    assert all(torch.equal(seen.reference[k], seen.policy[k]) for k in seen.policy)
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert all(torch.equal(saved["warm_reference"][k], seen.reference[k]) for k in seen.reference)

    resumed_seen = ReferenceAtStart()
    resumed = _module(demo_kit)
    _fit(resumed, synthetic_root, tmp_path / "resumed", 2, [resumed_seen], ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert all(torch.equal(resumed_seen.reference[k], seen.reference[k]) for k in seen.reference)
    assert [r.step for r in resumed.held_out] == [2]  # no second warm start: its held-out pass would add step 1


def test_scripted_actions_take_every_view_in_turn_after_the_policys_own_rubric(demo_kit):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from tooliqa_agent.engines import make_engine
    from tooliqa_agent.rollout import Agent
    from tooliqa_trainer.warm_actions import ScriptedActions, action_menu

    processor = AutoProcessor.from_pretrained(demo_kit)
    model = AutoModelForImageTextToText.from_pretrained(demo_kit, dtype=torch.float32).eval()
    boxes = ((0, 0, 500, 500), (250, 250, 750, 750))
    grammar = GrammarConfig(
        max_thinking_chars=0, max_note_chars=0, max_gap_chars=0, score_decimals=0, box_choices=boxes
    )
    protocol = ProtocolConfig(tools="both", rubric=True, structured=True, grammar=grammar)
    engine = make_engine(
        EngineConfig(name="hf", device="cpu", canonical_forced_text=True), model=model, processor=processor
    )
    asked = []
    inner_generate = engine.generate
    engine.generate = lambda requests, sampling: (
        asked.extend(r.kind for r in requests) or inner_generate(requests, sampling)
    )
    toolkit = Agent(engine, processor, protocol).toolkit
    menu = action_menu([toolkit.tool(name).schema() for name in toolkit.names], protocol)
    assert [len(kind) for kind in menu] == [1, *(2 for _ in toolkit.names)]  # answer; 2 boxes; brighten, darken
    agent = Agent(ScriptedActions(engine, processor, menu, first_gate=1), processor, protocol)
    images = [(torch.rand(3, 96, 96, generator=torch.Generator().manual_seed(i)) * 255).to(torch.uint8) for i in (0, 1)]
    groups = agent.rollout(images, 6, SamplingConfig(temperature=1.0, max_new_tokens=200, seed=1))
    assert set(asked) == {"rubric"}, "only the rubric note is the policy's own"
    calls = {name: [] for name in toolkit.names}
    for t, trajectory in enumerate(t for group in groups for t in group):
        assert trajectory.failure is None and trajectory.score == 3.0
        assert trajectory.turns[1].text == menu[t % 3][(t // 3) % len(menu[t % 3])]
        if t % 3:  # a tool: its view reaches the model's inputs, then the answer
            assert trajectory.turns[1].tool_ok and len(trajectory.images) == 2
            calls[trajectory.turns[1].call.name].append(trajectory.turns[1].text)
        else:
            assert trajectory.num_tool_calls == 0 and len(trajectory.images) == 1
    assert all(len(set(made)) == 2 for made in calls.values()), calls  # every argument set of every tool
    with pytest.raises(ValueError, match="magnifier.bbox_2d has no menu"):
        action_menu([toolkit.tool("magnifier").schema()], ProtocolConfig(tools="both", grammar=GrammarConfig()))
