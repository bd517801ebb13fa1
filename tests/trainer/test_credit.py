"""Credit assignment (``tooliqa_trainer.credit``) on real rollouts of the tiny kit: which token carries which advantage,
checked by decoding the tokens; and GSPO's token form (per-token advantages) against a loop reference."""

from __future__ import annotations

import pytest
import torch

from tooliqa_agent.engines.scripted import ScriptedEngine
from tooliqa_agent.grammar import GrammarConfig
from tooliqa_agent.prompts import PromptConfig
from tooliqa_agent.protocol import ProtocolConfig
from tooliqa_agent.types import SamplingConfig
from tooliqa_trainer.credit import action_credit, action_name, decision_levels, make_credit, sequence_credit
from tooliqa_trainer.loss import GSPOLoss

from ._turns import GAMMA, MAGNIFY, RUBRIC

PROTOCOL = ProtocolConfig(
    tools="both",
    rubric=True,
    max_tool_rounds=2,
    grammar=GrammarConfig(max_thinking_chars=0, max_note_chars=1, score_decimals=0),
    prompts=PromptConfig(rubric="Assess the image.", gate="Answer, or call one tool."),
)
MAGNIFY_CORNER = MAGNIFY.replace("[0, 0, 500, 500]", "[500, 500, 1000, 1000]")
FIRST = [MAGNIFY, MAGNIFY, GAMMA, None, None, MAGNIFY_CORNER]  # None: answer at the first gate
SECOND = [None, GAMMA, None, None, None, None]  # trajectory 1 calls the Gamma Corrector in round 2


def _reply(request) -> str:
    if request.kind == "rubric":
        return RUBRIC
    script = FIRST if request.turn == 1 else SECOND if request.turn == 2 else [None] * len(FIRST)
    k = request.trajectory % len(FIRST)  # the same script for every image's group
    return script[k] or f"<thinking></thinking> <answer>{1 + k % 5}</answer>"


@pytest.fixture(scope="module")
def rollout(demo_kit):
    from transformers import AutoProcessor

    from tooliqa_agent import Agent

    processor = AutoProcessor.from_pretrained(demo_kit)
    agent = Agent(ScriptedEngine(processor, _reply), processor, PROTOCOL)
    image = (torch.rand(3, 96, 96, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    group = agent.rollout([image], len(FIRST), SamplingConfig(max_new_tokens=80))[0]
    return group, processor.tokenizer


def _decoded(t, tokenizer, positions) -> str:
    return tokenizer.decode(t.input_ids[positions].tolist())


def test_the_rollout_takes_the_scripted_paths(rollout):
    group, _ = rollout
    paths = [tuple(action_name(turn) for turn in t.turns if turn.kind == "action") for t in group]
    assert paths == [
        ("magnifier", "answer"),
        ("magnifier", "gamma_corrector"),
        ("gamma_corrector", "answer"),
        ("answer",),
        ("answer",),
        ("magnifier", "answer"),
    ]
    assert all(t.score is not None for t in group)


def test_sequence_credit_puts_each_trajectory_advantage_on_every_token(rollout):
    group, tokenizer = rollout
    advantages = torch.randn(1, len(group))
    rows = make_credit("sequence")([group], advantages, tokenizer)
    for t, row, a in zip(group, rows, advantages[0].tolist()):
        assert row.shape == t.input_ids.shape
        assert torch.allclose(row[t.loss_mask], torch.full_like(row[t.loss_mask], a))


def test_action_credit_gives_each_decision_its_path_advantage_and_the_score_its_own(rollout):
    group, tokenizer = rollout
    advantages = torch.tensor([[0.9, -0.3, 0.4, -1.2, 0.2, 0.0]])  # GRPO advantages: mean 0
    a = advantages[0].tolist()
    magnifier, corner = (a[0] + a[1] + a[5]) / 3, (a[0] + a[1]) / 2
    # by hand, per trajectory and action turn: (the action's credit, its arguments' credit or None for an answer)
    want = [
        [(magnifier, corner - magnifier), (a[0] - corner, None)],
        [(magnifier, corner - magnifier), (a[1] - corner, 0.0)],  # round 2: Gamma after the same box as 0
        [(a[2], 0.0), (0.0, None)],  # the only Gamma call: its own advantage; then the only answer after it
        [((a[3] + a[4]) / 2, None)],
        [((a[3] + a[4]) / 2, None)],
        [(magnifier, a[5] - magnifier), (0.0, None)],  # the only other box
    ]
    rows = action_credit([group], advantages, tokenizer)
    for g, (t, row) in enumerate(zip(group, rows)):
        positions = t.loss_mask.nonzero().flatten().split([turn.num_tokens for turn in t.turns])
        turns = list(zip(t.turns, positions, [level for _, level in decision_levels(t, tokenizer)]))
        decided = [(turn, where, level) for turn, where, level in turns if level is not None]
        assert [turn.kind for turn, _, _ in decided] == ["action"] * len(want[g])
        for _, where, level in turns:
            if level is None:  # the rubric note, the forced last answer: the trajectory's own
                assert torch.allclose(row[where], torch.tensor(a[g]))
        for (turn, where, level), (action, arguments) in zip(decided, want[g]):
            assert torch.allclose(row[where[level == 1]], torch.tensor(action)), (g, turn.text)
            if arguments is None:  # an answer: decided up to "<answer>", then the score carries its own
                assert "<answer>" in _decoded(t, tokenizer, where[level == 1])
                assert _decoded(t, tokenizer, where[level == 0]).strip().startswith(str(int(t.score)))
                assert torch.allclose(row[where[level == 0]], torch.tensor(a[g]))
                assert not (level == 2).any()
            else:  # a call: the name up to "arguments", then the arguments
                assert turn.call.name in _decoded(t, tokenizer, where[level == 1])
                assert _decoded(t, tokenizer, where[level == 1]).rstrip(": ").endswith('"arguments"')
                assert _decoded(t, tokenizer, where[level == 2]).lstrip(": ").startswith("{")
                assert torch.allclose(row[where[level == 2]], torch.tensor(arguments)), (g, turn.text)
                assert not (level == 0).any()
    # the first gate's baseline is the group: its action credits average out over the group
    assert sum(w[0][0] for w in want) == pytest.approx(sum(a), abs=1e-6)


def test_contrast_credit_keeps_what_differs_between_images(rollout):
    """Two images whose groups decided alike: each decision's credit less its mean over both, the scores their own."""
    group, tokenizer = rollout
    first = torch.tensor([0.9, -0.3, 0.4, -1.2, 0.2, 0.0])
    second = torch.tensor([-0.5, 0.7, 0.1, 0.3, -0.4, -0.2])
    advantages = torch.stack([first, second])
    action = action_credit([group, group], advantages, tokenizer)
    contrast = make_credit("contrast")([group, group], advantages, tokenizer)
    n = len(group)
    for g, t in enumerate(group):
        decided = torch.zeros_like(t.loss_mask)
        positions = t.loss_mask.nonzero().flatten().split([turn.num_tokens for turn in t.turns])
        for where, (_, level) in zip(positions, decision_levels(t, tokenizer)):
            if level is not None:
                decided[where[level > 0]] = True
        mine, other = action[g], action[n + g]
        torch.testing.assert_close(contrast[g][decided], (mine[decided] - other[decided]) / 2)
        torch.testing.assert_close(contrast[n + g][decided], (other[decided] - mine[decided]) / 2)
        scored = t.loss_mask & ~decided
        torch.testing.assert_close(contrast[g][scored], torch.full_like(contrast[g][scored], float(first[g])))


def test_unknown_credit_is_named():
    with pytest.raises(ValueError, match="unknown credit assignment 'gae'"):
        make_credit("gae")
    assert make_credit("sequence") is sequence_credit


def test_gspo_token_form_carries_each_token_advantage():
    """Off-policy (ratio ≠ 1, the clip active on some rows): loss and gradient equal the GSPO paper's GSPO-token,
    written here as a loop; with one advantage per row it equals sequence-level GSPO."""
    g = torch.Generator().manual_seed(3)
    n, length = 5, 7
    old = -torch.rand(n, length, generator=g, dtype=torch.float64) * 3
    new = (old + 0.004 * torch.randn(n, length, generator=g, dtype=torch.float64)).requires_grad_(True)
    mask = torch.rand(n, length, generator=g) < 0.7
    mask[:, 0] = False
    mask[:, 1] = True
    adv = torch.randn(n, length, generator=g, dtype=torch.float64)
    eps = (3e-3, 4e-3)
    loss, stats = GSPOLoss(*eps)(new, old, adv, mask)
    (grad,) = torch.autograd.grad(loss, new)

    expected = new.new_zeros(())
    for i in range(n):
        tokens = mask[i].nonzero().flatten().tolist()
        s = torch.exp(sum(new[i, t] - old[i, t] for t in tokens) / len(tokens)).detach()
        terms = []
        for t in tokens:
            w = s * torch.exp(new[i, t] - new[i, t].detach())
            terms.append(-torch.minimum(w * adv[i, t], torch.clamp(w, 1 - eps[0], 1 + eps[1]) * adv[i, t]))
        expected = expected + sum(terms) / len(tokens)
    expected = expected / n
    (expected_grad,) = torch.autograd.grad(expected, new)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(grad, expected_grad)
    assert stats.clip_low + stats.clip_high > 0, "the test must exercise an active clip"

    # one advantage per row, given per token: the sequence-level loss and gradient
    per_row = adv[:, 1]
    seq_loss, _ = GSPOLoss(*eps)(new, old, per_row, mask)
    tok_loss, _ = GSPOLoss(*eps)(new, old, per_row.unsqueeze(-1).expand(n, length), mask)
    torch.testing.assert_close(seq_loss, tok_loss)
    torch.testing.assert_close(*(torch.autograd.grad(x, new)[0] for x in (seq_loss, tok_loss)))


def test_a_fit_with_action_credit_trains_on_the_decisions_credit(demo_kit, tmp_path):
    """``grpo.credit: action`` in a real Lightning fit: the loss gets each trajectory's per-token credit, and the step
    changes the policy."""
    import lightning as L

    from tooliqa_agent.types import EngineConfig
    from tooliqa_trainer import (
        GRPOConfig,
        GRPOModule,
        HiddenEvidenceSpec,
        IQADataModule,
        OptimConfig,
        PolicyConfig,
        RolloutConfig,
    )

    seen = []

    class Scripted(GRPOModule):
        def build_engine(self):
            return ScriptedEngine(self.processor, _reply)

        def update(self, trajectories, advantages, beta, timer):
            seen.append((trajectories, advantages, {k: v.detach().clone() for k, v in self.policy.named_parameters()}))
            return super().update(trajectories, advantages, beta, timer)

    module = Scripted(
        policy=PolicyConfig(path=str(demo_kit), dtype="float32", freeze_vision=True),
        rollout=RolloutConfig(group_size=len(FIRST), protocol=PROTOCOL, engine=EngineConfig(name="scripted")),
        grpo=GRPOConfig(credit="action", kl_schedule=((0, 0.0),), micro_batch_size=8),
        optim=OptimConfig(lr=1e-3, warmup_ratio=0.0),
    )
    spec = HiddenEvidenceSpec(out_dir=str(tmp_path / "hidden"), train_references=1, held_out_references=1)
    data = IQADataModule(hidden_evidence=spec, batch_size=2, val_batch_size=20, steps=1, seed=0)
    trainer = L.Trainer(
        accelerator="cpu", max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module, datamodule=data)

    ((trajectories, advantages, before),) = seen
    assert len(advantages) == len(trajectories) == 2 * len(FIRST)
    for t, row in zip(trajectories, advantages):
        assert row.shape == t.input_ids.shape
    # the decisions of the first gate carry their action's mean: equal over the three magnifier trajectories
    tokenizer = module.processor.tokenizer
    for image in range(2):
        group = trajectories[image * len(FIRST) : (image + 1) * len(FIRST)]
        rows = advantages[image * len(FIRST) : (image + 1) * len(FIRST)]
        gate = []
        for t, row in zip(group, rows):
            positions = t.loss_mask.nonzero().flatten().split([turn.num_tokens for turn in t.turns])
            gate.append(float(row[positions[1][decision_levels(t, tokenizer)[1][1] == 1]][0]))
        assert gate[0] == pytest.approx(gate[1]) == pytest.approx(gate[5])
        assert gate[3] == pytest.approx(gate[4])
    assert any(not torch.equal(p, before[k]) for k, p in module.policy.named_parameters() if p.requires_grad)
