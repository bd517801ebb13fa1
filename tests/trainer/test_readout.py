"""Readouts: the sampled mean and the probability-weighted (expected) score, checked against a hand-run forward."""

from __future__ import annotations

import pytest
import torch

from tooliqa_agent import Agent, PromptConfig, ProtocolConfig, SamplingConfig
from tooliqa_agent.collate import collate
from tooliqa_agent.engines.scripted import ScriptedEngine
from tooliqa_trainer import AgentAssessor
from tooliqa_trainer.readout import ReadoutContext, expected_scores, leading_digit_position, sampled_scores

PROTOCOL = ProtocolConfig(tools="none", rubric=False, prompts=PromptConfig(single_turn="Rate this image."))
REPLIES = ["<thinking>a</thinking> <answer>2</answer>", "<thinking>b</thinking>\n<answer>4.50</answer>", "no answer"]


def _groups(tiny_model, replies=REPLIES, images=2):
    processor, _ = tiny_model
    agent = Agent(ScriptedEngine(processor, lambda r: replies[r.trajectory % len(replies)]), processor, PROTOCOL)
    pictures = [
        torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(i))
        for i in range(images)
    ]
    return agent.rollout(pictures, len(replies), SamplingConfig(temperature=1.0))


def test_leading_digit_position_finds_the_answer_digit(tiny_model):
    processor, _ = tiny_model
    first, second, failed = _groups(tiny_model)[0]
    for trajectory, digit in ((first, "2"), (second, "4")):
        position = leading_digit_position(trajectory, processor.tokenizer)
        assert processor.tokenizer.decode([int(trajectory.input_ids[position])]) == digit
        assert trajectory.loss_mask[position]
    assert leading_digit_position(failed, processor.tokenizer) is None


def test_sampled_readout_is_the_mean_valid_score(tiny_model):
    processor, _ = tiny_model
    assert sampled_scores(_groups(tiny_model), ReadoutContext(None, processor)) == [3.25, 3.25]
    assert sampled_scores(
        [[t for t in _groups(tiny_model)[0] if t.score is None]], ReadoutContext(None, processor)
    ) == [None]


def test_expected_readout_matches_a_hand_computed_forward(tiny_model):
    processor, model = tiny_model
    groups = _groups(tiny_model)
    context = ReadoutContext(model, processor)
    got = expected_scores(groups, context, micro_batch=2)  # micro-batches mix images: padding must not matter
    digits = [processor.tokenizer.convert_tokens_to_ids(str(d)) for d in range(1, 6)]
    for group, value in zip(groups, got):
        want = []
        for trajectory in group[:2]:
            position = leading_digit_position(trajectory, processor.tokenizer)
            batch = collate([trajectory], processor, processor.tokenizer.pad_token_id)
            with torch.no_grad():
                logits = model(**batch.model_inputs(), use_cache=False).logits[0, position - 1, digits]
            expectation = float((logits.softmax(-1) * torch.arange(1, 6)).sum())
            sampled_digit = int(str(trajectory.score)[0])
            want.append(trajectory.score - sampled_digit + expectation)
        assert value == pytest.approx(sum(want) / 2, abs=1e-5)
        assert 1.0 < value < 5.5


def test_assessor_expected_readout_needs_a_model(tiny_model):
    processor, model = tiny_model
    agent = Agent(ScriptedEngine(processor, lambda r: REPLIES[0]), processor, PROTOCOL)
    with pytest.raises(ValueError, match="ScriptedEngine"):
        AgentAssessor(agent, readout="expected")
    with pytest.raises(ValueError, match="unknown readout"):
        AgentAssessor(agent, readout="median")
    images = [torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)]
    (assessment,) = AgentAssessor(agent, readout="expected", model=model)(None, images)
    assert assessment.score != 2.0 and 1.0 <= assessment.score <= 5.0


@pytest.mark.parametrize(
    ("reply", "digit"),
    [
        ("<thinking>a</thinking> <answer>3</answer> then <answer>score 4.5</answer>", "4"),  # the last block counts
        ("<thinking>a</thinking> <answer>05</answer>", None),  # parse_score reads 5.0; no single leading digit
        ("<thinking>a</thinking> <answer>x</answer> <answer>2</answer>", "2"),
    ],
)
def test_leading_digit_follows_parse_score(tiny_model, reply, digit):
    processor, model = tiny_model
    (group,) = _groups(tiny_model, replies=[reply], images=1)
    (trajectory,) = group
    position = leading_digit_position(trajectory, processor.tokenizer)
    if digit is None:
        assert position is None
        # nothing to read out: the expected readout keeps the sampled score instead of inventing one
        assert expected_scores([group], ReadoutContext(model, processor)) == [trajectory.score]
    else:
        assert processor.tokenizer.decode([int(trajectory.input_ids[position])]) == digit
        assert int(trajectory.score) == int(digit)
