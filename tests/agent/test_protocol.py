"""Prompts, score parsing, image pre-sizing, ``vllm_prompt`` and ``collate`` — hand-computed expectations."""

from __future__ import annotations

import math
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

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
        ("<answer>\u22123</answer>", None, "out_of_range"),  # U+2212 is a minus sign, not noise before a 3
        ("<answer>good</answer> 4", None, "no_number"),  # no fallback to numbers outside the answer
        ("<thinking>4</thinking>", None, "no_action"),
        # a number is read whole or not at all: never 5.0 from ".5", 1.0 from "1e1", 4.0 from "4,5"
        ("<answer>.5</answer>", None, "bad_number"),
        ("<answer>1e1</answer>", None, "bad_number"),
        ("<answer>2E-1 points</answer>", None, "bad_number"),
        ("<answer>4,5</answer>", None, "bad_number"),
        ("<answer>4.5.1</answer>", None, "bad_number"),
        ("<answer>\u0664</answer>", None, "bad_number"),  # an Arabic-Indic four: a digit, but not an ASCII one
        ("<answer>It is a 4.</answer>", 4.0, None),  # punctuation after a number ends it
        ("<answer>4, sharp</answer>", 4.0, None),
        ("<answer>+4</answer>", 4.0, None),
        ("<answer>3<answer>4.5</answer>", 4.5, None),  # the last <answer> that is closed
        ("<answer>2</answer><answer>3", 2.0, None),  # an unclosed answer is no answer
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
    # the format reward and the grammar follow the reasoning tag the prompt asks for
    assert ProtocolConfig(tools="none", rubric=False).thinking_tag == "think"  # VisualQuality-R1's question
    assert ProtocolConfig(tools="none").thinking_tag == ProtocolConfig().thinking_tag == "thinking"
    plain = PromptConfig(single_turn="Rate it: <answer>x</answer>")  # asks for no tag: P0/PG's stays
    assert ProtocolConfig(tools="none", rubric=False, prompts=plain).thinking_tag == "thinking"
    own = PromptConfig(single_turn="Reason in <why></why>, then <answer>x</answer>", single_turn_tag="why")
    assert ProtocolConfig(tools="none", rubric=False, prompts=own).thinking_tag == "why"
    with pytest.raises(ValueError, match="single_turn_tag must be a tag name"):
        PromptConfig(single_turn_tag="answer")


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


# Characters that are never part of a numeral, to surround numbers with in the properties below.
_FILLER = st.text(alphabet=" abcdfxyz:/()!?*\n", max_size=8)
_DECIMAL = st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,3})?", fullmatch=True)
_PROPS = settings(max_examples=300, deadline=None, derandomize=True, database=None)


@_PROPS
@given(_FILLER, _DECIMAL, _FILLER, _FILLER)
def test_plain_decimals_are_read_exactly(before, number, after, outside):
    """Score grammar: the first plain decimal of the last answer, exactly, valid iff in [1, 5]."""
    value, failure = parse_score(f"{outside}4<answer>{before}{number}{after} 2</answer>{outside}")
    if 1.0 <= float(number) <= 5.0:
        assert (value, failure) == (float(number), None)
    else:
        assert value is None and failure.startswith("out_of_range")


@_PROPS
@given(
    _DECIMAL,
    st.sampled_from([",5", ",0", "e1", "E1", "e-2", "e+2", "e\u22122", ".5.5", ".0.1"]),
    st.sampled_from(["", ".", ","]),
    _FILLER,
)
def test_numbers_are_never_read_in_part(number, suffix, prefix, after):
    """A numeral glued to more number syntax (a leading "."/",", a decimal comma, an exponent) is not a score."""
    glued = prefix + number + suffix
    value, failure = parse_score(f"<answer>{glued}{after}</answer>")
    assert value is None and failure.startswith("bad_number"), (glued, value, failure)


_PIECES = st.sampled_from(["<answer>", "</answer>", "<answer", "answer>", "4", "2.5", ".", "-", "\u2212", "e", " "])
_ANY = st.lists(_PIECES | st.text(max_size=4), max_size=12).map("".join)


@_PROPS
@given(_ANY, _ANY, _ANY)
def test_only_the_last_answer_counts(before, body, after):
    """Text before the last answer block and tag-free text after it never change the score."""
    body = body.replace("answer>", "")
    after = after.replace("</answer>", "")
    text = f"{before}<answer>{body}</answer>{after}"
    assert parse_score(text) == parse_score(f"<answer>{body}</answer>")
    value, failure = parse_score(text)
    assert (failure is None) == (value is not None) and (value is None or 1.0 <= value <= 5.0)
    if failure is not None:
        assert failure.split(":")[0] in ("no_number", "bad_number", "out_of_range")


def test_hostile_answers_are_parsed_in_linear_time():
    """1 MB of hostile text in well under a second (≈ 20 ms on a CPU core); the lazy-regex scan took > 2 min.

    The bound is 10× the 50 ms target so only a quadratic regression fails it; 100 KB goes first, so a regression
    fails in seconds rather than hanging."""
    for n in (100_000, 1_000_000):
        texts = {
            "unclosed opens": "<answer>" * (n // 8),
            "stray closes": "</answer>" * (n // 9),
            "open then text": "<answer>" + "x" * n,
            "digit-free answer": "<answer>" + "-." * (n // 2) + "</answer>",
            "one long numeral": "<answer>" + "1," * (n // 2) + "</answer>",
            "many digits": "<answer>" + "9" * n + "</answer>",
            "nested opens": "<answer>" * (n // 8) + "3</answer>",
        }
        for name, text in texts.items():
            best = math.inf
            for _ in range(3):
                start = time.perf_counter()
                parse_score(text)
                best = min(best, time.perf_counter() - start)
            assert best < 0.5, f"{name}, {n} characters: {best:.2f} s"
