"""AgentAssessor: trajectories become data's Assessment records; several samples report their mean valid score."""

from __future__ import annotations

import pytest
import torch

from tooliqa_agent import Agent, PromptConfig, ProtocolConfig, SamplingConfig
from tooliqa_agent.engines.scripted import ScriptedEngine
from tooliqa_data import OK, PARSE_FAILURE
from tooliqa_trainer import AgentAssessor

PROTOCOL = ProtocolConfig(tools="none", rubric=False, prompts=PromptConfig(single_turn="Rate this image."))
REPLIES = {0: "<thinking>a</thinking> <answer>2.00</answer>", 1: "<thinking>b</thinking> <answer>4.50</answer>"}


def _agent(tiny_model, reply):
    processor, _ = tiny_model
    return Agent(ScriptedEngine(processor, reply), processor, PROTOCOL)


def test_single_and_mean_of_samples(tiny_model):
    images = [torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8) for _ in range(2)]
    single = AgentAssessor(_agent(tiny_model, lambda r: REPLIES[r.trajectory % 2]))(None, images)
    assert [a.score for a in single] == [2.0, 4.5] and all(a.status == OK for a in single)
    assert single[0].output_tokens > 0 and single[0].turns[0].kind == "final"

    sampled = AgentAssessor(
        _agent(tiny_model, lambda r: REPLIES[r.trajectory % 2]), SamplingConfig(temperature=1.0), samples=2
    )(None, images)
    assert [a.score for a in sampled] == [pytest.approx(3.25), pytest.approx(3.25)]


def test_parse_failure_is_reported_not_raised(tiny_model):
    images = [torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)]
    (failed,) = AgentAssessor(_agent(tiny_model, lambda r: "no answer here"))(None, images)
    assert failed.score is None and failed.status == PARSE_FAILURE and failed.detail
    with pytest.raises(ValueError, match="samples"):
        AgentAssessor(_agent(tiny_model, lambda r: ""), SamplingConfig(temperature=0.0), samples=3)


def test_an_image_the_processor_refuses_is_its_own_row_and_its_batch_mates_are_scored(tiny_model, tmp_path):
    """Issue 16.1: one extreme aspect ratio used to turn its whole batch into assessor_error rows naming a batch
    position; now it is one ``unusable_image`` row naming its file."""
    from tooliqa_data import IQAItem
    from tooliqa_trainer.assessor import UNUSABLE_IMAGE

    items = [IQAItem(tmp_path / f"{name}.png", 3.0, "set") for name in ("a", "thin", "b")]
    images = [torch.randint(0, 256, size, dtype=torch.uint8) for size in ((3, 64, 64), (3, 32, 8000), (3, 64, 96))]
    a, thin, b = AgentAssessor(_agent(tiny_model, lambda r: REPLIES[0]))(items, images)
    assert a.score == 2.0 and b.score == 2.0 and a.status == b.status == OK
    assert thin.score is None and thin.status == UNUSABLE_IMAGE and str(items[1].image) in thin.detail
