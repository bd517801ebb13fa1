"""Prompts, score parsing, image pre-sizing, ``vllm_prompt`` and ``collate`` — hand-computed expectations."""

from __future__ import annotations

import pytest
import torch

from tooliqa_agent import (
    GenerationRequest,
    PromptConfig,
    ProtocolConfig,
    SamplingConfig,
    collate,
    parse_score,
    vllm_prompt,
)
from tooliqa_agent.engines.scripted import ScriptedEngine
from tooliqa_agent.prompts import P0, PG
from tooliqa_agent.rollout import Agent
from tooliqa_agent.vision import image_token_count, prepare_image

from ._checks import ANSWER, MAGNIFY, RUBRIC, image, one_thread  # noqa: F401 (autouse fixture)

# Paper Appendix A as its PDF text reads (line breaks flattened): the prompts must be these words, verbatim.
PAPER_P0 = (
    "You are doing the image quality assessment task. Instead of giving a score immediately, first analyze the image "
    "based on the following key dimensions: 1. **Sharpness & Detail**: Is the image blurry or sharp? Are textures "
    "well-defined? 2. **Noise & Grain**: Is there visible noise (luminance/color)? Is it distracting? 3. **Artifacts**: "
    "Are there compression artifacts (JPEG blocks), ringing, or ghosting? 4. **Exposure & Color**: Is it "
    "over/underexposed? Are colors natural? 5. **Saliency Visibility**: Is the MAIN SUBJECT clearly visible? Or is it "
    "obscured by shadows/highlights? Focus primarily on the subjects clarity, treating background visibility as "
    "secondary. Output Format: <thinking> ... </thinking> <answer> Sharpness: [Low/Medium/High] - Brief note Noise: "
    "[None/Visible/Severe] - Brief note Artifacts: [None/Minor/Severe] - Brief note Exposure: [Poor/Good/Excellent] - "
    "Brief note Saliency Visibility: [Subject Clear/Obscured] - Brief Note </answer>"
)
PAPER_PG = (
    "Single-Action per Turn: choose EXACTLY ONE - A) Final answer (1.00 - 5.00) - B) Tool call Output one of: A) Final "
    "Answer: <thinking>...</thinking> <answer>...</answer> B) Tool call: <thinking>...</thinking> <tool_call>...</tool_call>"
)


def test_prompts_are_the_papers_verbatim():
    assert " ".join(P0.split()) == PAPER_P0 and len(P0.splitlines()) == 15
    assert " ".join(PG.split()) == PAPER_PG and len(PG.splitlines()) == 6
    prompts = PromptConfig()
    assert prompts.first_user(rubric=True, tools=True) == P0
    assert prompts.failure_text("magnifier: bbox_2d needs 4 numbers, got 3", 1) == (
        "Tool call failed: magnifier: bbox_2d needs 4 numbers, got 3. Nothing was executed.\n" + PG
    )
    assert prompts.observation_text("Magnified view.", 0).endswith("Tool calls remaining: 0.\n" + prompts.final)


@pytest.mark.parametrize(
    ("text", "score", "code"),
    [
        ("<thinking>a</thinking> <answer>3.75</answer>", 3.75, None),
        ("<answer>1</answer>", 1.0, None),
        ("<answer>5.00</answer>", 5.0, None),
        ("<answer> score: 4.5/5 </answer>", 4.5, None),
        ("<answer>2</answer> then <answer>4.25</answer>", 4.25, None),  # the last answer
        ("<answer>5.01</answer>", None, "out_of_range"),  # never clamped
        ("<answer>0.99</answer>", None, "out_of_range"),
        ("<answer>-3</answer>", None, "out_of_range"),
        ("<answer>good</answer> 4", None, "no_number"),  # no fallback to numbers outside the answer
        ("<thinking>4</thinking>", None, "no_action"),
    ],
)
def test_parse_score(text, score, code):
    value, failure = parse_score(text)
    assert value == score
    assert (failure is None) if code is None else failure.startswith(code)


def test_protocol_config_validation():
    with pytest.raises(ValueError, match="max_tool_rounds"):
        ProtocolConfig(max_tool_rounds=-1)
    with pytest.raises(ValueError, match="temperature"):
        SamplingConfig(temperature=-0.1)
    assert ProtocolConfig(tools="both", max_tool_rounds=0).first_kind == "rubric"
    assert ProtocolConfig(tools="none", rubric=False).first_kind == "final"


def test_prepare_image(tiny_model):
    processor, _ = tiny_model  # pixel bounds 32² … 128²
    big = prepare_image(image(0, 300, 200), processor)
    assert big.dtype == torch.uint8 and big.shape[1] % 32 == 0 and big.shape[2] % 32 == 0
    assert 32 * 32 <= big.shape[1] * big.shape[2] <= 128 * 128
    assert big.shape[1] > big.shape[2]  # aspect kept (300:200)
    fits = image(1, 64, 96)
    assert prepare_image(fits, processor) is fits
    assert image_token_count(fits, processor) == (64 // 32) * (96 // 32)
    with pytest.raises(ValueError, match="not pre-sized"):
        image_token_count(image(2, 70, 96), processor)
    with pytest.raises(ValueError, match="uint8"):
        prepare_image(torch.zeros(3, 64, 64), processor)


def test_vllm_prompt_collapses_each_run():
    pad, start, end = 9, 7, 8
    a, b = image(0, 64, 64), image(1, 32, 64)
    request = GenerationRequest((1, start, pad, pad, pad, pad, end, 2, start, pad, pad, end, 3), (a, b))
    assert vllm_prompt(request, pad) == ([1, start, pad, end, 2, start, pad, end, 3], [a, b])
    with pytest.raises(ValueError, match="2 placeholder runs but 1 images"):
        vllm_prompt(GenerationRequest(request.prompt_ids, (a,)), pad)


def test_collate_right_pads(tiny_model):
    processor, _ = tiny_model
    engine = ScriptedEngine(processor, [[RUBRIC, ANSWER], [RUBRIC, MAGNIFY, ANSWER]])
    [[short, long]] = Agent(engine, processor).rollout([image(0, 64, 96)], 2, SamplingConfig())
    batch = collate([short, long], processor)
    n, length = 2, len(long.input_ids)
    assert length > len(short.input_ids)
    assert batch.input_ids.shape == batch.attention_mask.shape == batch.loss_mask.shape == (n, length)
    assert batch.attention_mask[0].sum() == len(short.input_ids) and batch.attention_mask[1].all()
    assert (batch.input_ids[0, len(short.input_ids) :] == processor.tokenizer.pad_token_id).all()
    assert not batch.loss_mask[0, len(short.input_ids) :].any()
    assert torch.equal(batch.image_grid_thw, torch.tensor([[1, 4, 6], [1, 4, 6], [1, 4, 6]]))
    assert batch.pixel_values.shape == (3 * 4 * 6, 3 * 2 * 16 * 16)
    assert set(batch.model_inputs()) == {
        "input_ids",
        "attention_mask",
        "mm_token_type_ids",
        "pixel_values",
        "image_grid_thw",
    }
    assert batch.to("cpu", torch.bfloat16).pixel_values.dtype == torch.bfloat16
