"""The protocol walked branch by branch with the scripted engine; every trajectory checked against the contract."""

from __future__ import annotations

import pytest
import torch

from tooliqa_agent import Agent, PromptConfig, ProtocolConfig, SamplingConfig
from tooliqa_agent.engines.scripted import ScriptedEngine
from tooliqa_agent.prompts import P_FINAL, PG, VQR1_QUESTION

from ._checks import (
    ANSWER,
    BAD_JSON,
    GAMMA,
    MAGNIFY,
    NO_TAG,
    RUBRIC,
    assistant,
    check_invariants,
    expected_ids,
    image,
    one_thread,  # noqa: F401 (autouse fixture)
    tool,
    user,
    vllm_prompt,
)

P0_TEXT = PromptConfig().rubric
ORIGINAL = image(0, 96, 128)  # already pre-sized: 96×128 px → grid (1, 6, 8) → 12 placeholders


def run(processor, scripts, protocol=None, images=(ORIGINAL,), group_size=None, max_new_tokens=512):
    engine = ScriptedEngine(processor, scripts)
    agent = Agent(engine, processor, protocol)
    group = group_size or len(scripts) // len(images)
    trajectories = agent.rollout(list(images), group, SamplingConfig(max_new_tokens=max_new_tokens))
    flat = [t for row in trajectories for t in row]
    for t in flat:
        check_invariants(t, processor)
    return agent, engine, flat


def assert_conversation(processor, agent, trajectory, messages, tools=True):
    schemas = agent.toolkit.schemas() if tools else None
    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert vllm_prompt(trajectory, image_pad)[0] == expected_ids(processor, messages, schemas)


def test_answer_at_once(tiny_model):
    processor, _ = tiny_model
    agent, engine, [t] = run(processor, [[RUBRIC, ANSWER]])
    assert t.score == 3.75 and t.failure is None
    assert [turn.kind for turn in t.turns] == ["rubric", "action"]
    assert (t.num_turns, t.num_tool_calls, t.num_successful_calls, t.num_failed_calls) == (2, 0, 0, 0)
    assert_conversation(
        processor,
        agent,
        t,
        [user(P0_TEXT, True), assistant(RUBRIC), user(PG), assistant(ANSWER)],
    )
    assert t.prompt_length == len(engine.requests[0].prompt_ids)
    assert [r.kind for r in engine.requests] == ["rubric", "action"]


def test_magnifier_then_answer(tiny_model):
    processor, _ = tiny_model
    agent, _, [t] = run(processor, [[RUBRIC, MAGNIFY, ANSWER]])
    assert t.score == 3.75
    view = t.turns[1].view
    assert view.tool == "magnifier" and view.box == (0, 0, 64, 48)  # 0–500 of 128×96 px
    assert view.description == "Magnified view of region [0, 0, 500, 500] of the original image."
    assert len(t.images) == 2 and torch.equal(t.images[1], view.image)
    obs = f"{view.description}\nThis view is supplementary evidence about the original image. Tool calls remaining: 1."
    assert_conversation(
        processor,
        agent,
        t,
        [
            user(P0_TEXT, True),
            assistant(RUBRIC),
            user(PG),
            assistant(MAGNIFY),
            tool(obs + "\n" + PG, True),
            assistant(ANSWER),
        ],
    )
    assert (t.num_tool_calls, t.num_successful_calls, t.num_failed_calls) == (1, 1, 0)


def test_gamma_then_magnifier_then_forced_answer(tiny_model):
    processor, _ = tiny_model
    agent, engine, [t] = run(processor, [[RUBRIC, GAMMA, MAGNIFY, ANSWER]])
    assert t.score == 3.75
    assert [turn.kind for turn in t.turns] == ["rubric", "action", "action", "final"]
    gamma, magnifier = t.turns[1].view, t.turns[2].view
    assert gamma.tool == "gamma_corrector" and gamma.gamma == 0.5 and magnifier.tool == "magnifier"
    assert len(t.images) == 3
    head = "\nThis view is supplementary evidence about the original image. Tool calls remaining: {}."
    assert_conversation(
        processor,
        agent,
        t,
        [
            user(P0_TEXT, True),
            assistant(RUBRIC),
            user(PG),
            assistant(GAMMA),
            tool(gamma.description + head.format(1) + "\n" + PG, True),
            assistant(MAGNIFY),
            tool(magnifier.description + head.format(0) + "\n" + P_FINAL, True),
            assistant(ANSWER),
        ],
    )
    assert (t.num_tool_calls, t.num_successful_calls) == (2, 2)
    assert [len(r.images) for r in engine.requests] == [1, 1, 2, 3]


def test_invalid_json_gives_failure_turn_then_answer(tiny_model):
    processor, _ = tiny_model
    agent, _, [t] = run(processor, [[RUBRIC, BAD_JSON, ANSWER]])
    assert t.score == 3.75
    bad = t.turns[1]
    assert bad.call is None and bad.view is None and bad.error and not bad.tool_ok
    assert (t.num_tool_calls, t.num_successful_calls, t.num_failed_calls) == (1, 0, 1)
    failure = f"Tool call failed: {bad.error.rstrip('. ')}. Nothing was executed.\n{PG}"
    assert_conversation(
        processor,
        agent,
        t,
        [
            user(P0_TEXT, True),
            assistant(RUBRIC),
            user(PG),
            assistant(BAD_JSON),
            tool(failure),
            assistant(ANSWER),
        ],
    )
    assert len(t.images) == 1


def test_third_tool_call_ends_the_trajectory_by_default(tiny_model):
    # SPEC §2: after the second tool round the next turn must answer; a call there is a failure, not a fifth turn
    processor, _ = tiny_model
    _, _, [t] = run(processor, [[RUBRIC, MAGNIFY, GAMMA, MAGNIFY, ANSWER]])
    assert t.score is None and t.failure.startswith("tool_after_last_round")
    assert [turn.kind for turn in t.turns] == ["rubric", "action", "action", "final"]
    assert (t.num_tool_calls, t.num_successful_calls) == (2, 2)  # the last call is never answered: trajectory over
    assert len(t.images) == 3


def test_third_tool_call_is_refused_then_answer(tiny_model):
    processor, _ = tiny_model
    agent, _, [t] = run(processor, [[RUBRIC, MAGNIFY, GAMMA, MAGNIFY, ANSWER]], protocol=ProtocolConfig(refusals=1))
    assert t.score == 3.75 and t.failure is None
    assert [turn.kind for turn in t.turns] == ["rubric", "action", "action", "final", "final"]
    refused = t.turns[3]
    assert refused.call is not None and refused.call.name == "magnifier" and refused.view is None
    assert refused.error == "no tool calls remain"
    assert (t.num_tool_calls, t.num_successful_calls, t.num_failed_calls) == (3, 2, 1)
    assert len(t.images) == 3
    rendered = t.render(processor.tokenizer)
    assert f"Tool call failed: no tool calls remain. Nothing was executed.\n{P_FINAL}" in rendered


def test_second_refusal_ends_the_trajectory(tiny_model):
    processor, _ = tiny_model
    _, _, [t] = run(processor, [[RUBRIC, MAGNIFY, GAMMA, MAGNIFY, MAGNIFY]], protocol=ProtocolConfig(refusals=1))
    assert t.score is None and t.failure.startswith("tool_after_last_round")
    assert t.num_turns == 5 and t.num_failed_calls == 1  # the last call is never answered: trajectory over


def test_no_tag_is_a_parse_failure(tiny_model):
    processor, _ = tiny_model
    _, _, [t] = run(processor, [[RUBRIC, NO_TAG]])
    assert t.score is None and t.failure.startswith("no_action")
    assert t.num_turns == 2


def test_out_of_range_score_is_a_failure_not_clamped(tiny_model):
    processor, _ = tiny_model
    _, _, [t] = run(processor, [[RUBRIC, "<thinking>x</thinking> <answer>7.5</answer>"]])
    assert t.score is None and t.failure.startswith("out_of_range")


def test_truncated_turn_ends_the_trajectory(tiny_model):
    processor, _ = tiny_model
    _, _, [t] = run(processor, [[RUBRIC]], max_new_tokens=10)
    assert t.failure.startswith("truncated") and not t.turns[0].finished and t.turns[0].num_tokens == 10


def test_generated_vision_token_stops_the_trajectory(tiny_model):
    processor, _ = tiny_model
    _, _, [t] = run(processor, [[RUBRIC, "<thinking>x<|image_pad|></thinking>"]])
    assert t.failure.startswith("vision_token") and t.turns[1].text == "<thinking>x"
    assert len(t.images) == 1


def test_rubric_off(tiny_model):
    processor, _ = tiny_model
    protocol = ProtocolConfig(rubric=False)
    agent, _, [t] = run(processor, [[MAGNIFY, ANSWER]], protocol=protocol)
    assert t.score == 3.75 and [turn.kind for turn in t.turns] == ["action", "action"]
    view = t.turns[0].view
    obs = f"{view.description}\nThis view is supplementary evidence about the original image. Tool calls remaining: 1."
    first = f"{protocol.prompts.task}\n{PG}"
    assert_conversation(
        processor,
        agent,
        t,
        [user(first, True), assistant(MAGNIFY), tool(obs + "\n" + PG, True), assistant(ANSWER)],
    )


def test_tools_off(tiny_model):
    processor, _ = tiny_model
    protocol = ProtocolConfig(tools="none")
    agent, _, [t, refused] = run(processor, [[RUBRIC, ANSWER], [RUBRIC, MAGNIFY, ANSWER]], protocol=protocol)
    assert t.score == 3.75 and [turn.kind for turn in t.turns] == ["rubric", "final"]
    answer_only = protocol.prompts.answer_only
    assert_conversation(
        processor, agent, t, [user(P0_TEXT, True), assistant(RUBRIC), user(answer_only), assistant(ANSWER)], tools=False
    )
    assert "<tools>" not in t.render(processor.tokenizer)
    # with no tools a tool call ends the trajectory (or, with a refusal left, is refused and the answer forced)
    assert refused.failure.startswith("tool_after_last_round") and refused.num_turns == 2
    _, _, [refused] = run(processor, [[RUBRIC, MAGNIFY, ANSWER]], protocol=ProtocolConfig(tools="none", refusals=1))
    assert refused.score == 3.75 and refused.num_failed_calls == 1 and len(refused.images) == 1


def test_tools_none_rubric_off_is_the_visualquality_r1_protocol(tiny_model):
    processor, _ = tiny_model
    reply = "<think>Sharp, little noise.</think> <answer>4.20</answer>"
    agent, _, [t] = run(processor, [[reply]], protocol=ProtocolConfig(tools="none", rubric=False))
    assert t.score == 4.2 and [turn.kind for turn in t.turns] == ["final"]
    assert_conversation(processor, agent, t, [user(VQR1_QUESTION, True), assistant(reply)], tools=False)


def test_prompts_come_from_config(tiny_model):
    processor, _ = tiny_model
    protocol = ProtocolConfig(prompts=PromptConfig(gate="CHOOSE NOW", rubric="RUBRIC PLEASE"))
    _, engine, [t] = run(processor, [[RUBRIC, ANSWER]], protocol=protocol)
    rendered = t.render(processor.tokenizer)
    assert "RUBRIC PLEASE" in rendered and "CHOOSE NOW" in rendered and "Single-Action" not in rendered


def test_batched_rollout_advances_turn_by_turn(tiny_model, monkeypatch):
    """B=2 images (different sizes) × G=3: one generate per turn over the live ones, one Toolkit.run per turn."""
    processor, _ = tiny_model
    scripts = [
        [RUBRIC, ANSWER],
        [RUBRIC, MAGNIFY, ANSWER],
        [RUBRIC, GAMMA, MAGNIFY, ANSWER],
        [RUBRIC, NO_TAG],
        [RUBRIC, GAMMA, BAD_JSON, ANSWER],
        [RUBRIC, MAGNIFY, GAMMA, MAGNIFY, ANSWER],
    ]
    engine = ScriptedEngine(processor, scripts)
    agent = Agent(engine, processor, ProtocolConfig(refusals=1))  # the last script's third call is refused
    tool_batches = []
    real_run = agent.toolkit.run
    monkeypatch.setattr(agent.toolkit, "run", lambda o, c: tool_batches.append(len(c)) or real_run(o, c))
    calls = []
    real_generate = engine.generate
    monkeypatch.setattr(engine, "generate", lambda r, s: calls.append(len(r)) or real_generate(r, s))
    images = [image(1, 96, 128), image(2, 200, 150)]  # the second is pre-sized by the agent
    trajectories = agent.rollout(images, 3, SamplingConfig())
    assert [[t.image_index, t.sample_index] for row in trajectories for t in row] == [
        [b, g] for b in range(2) for g in range(3)
    ]
    assert calls == [6, 6, 4, 3, 1]  # finished trajectories drop out
    assert tool_batches == [4, 2]  # turn 1: M, G, G, M; turn 2: M, G (the bad JSON never runs) — one batch each
    flat = [t for row in trajectories for t in row]
    for t in flat:
        check_invariants(t, processor)
    assert [t.score for t in flat] == [3.75, 3.75, 3.75, None, 3.75, 3.75]
    second = flat[3].images[0]
    assert second.shape[1] % 32 == 0 and second.shape[2] % 32 == 0 and second.shape[1] * second.shape[2] <= 128 * 128
    assert all(t.total_s >= t.generation_s > 0 for t in flat)
    assert flat[2].tools_s > 0 and flat[0].tools_s == 0


def test_group_size_must_be_positive(tiny_model):
    processor, _ = tiny_model
    agent = Agent(ScriptedEngine(processor, [[ANSWER]]), processor)
    with pytest.raises(ValueError, match="group_size"):
        agent.rollout([ORIGINAL], 0, SamplingConfig())
    with pytest.raises(ValueError, match="image 0"):
        agent.rollout([torch.zeros(96, 128)], 1, SamplingConfig())


def test_tools_work_on_the_full_resolution_original(tiny_model):
    """SPEC §3: the global view is pre-sized, but the magnifier crops (and gamma corrects) the original's own pixels,
    so a magnified view holds detail the pre-sized view averaged away; each view is planned inside the processor's
    bounds (the tiny kit: 1,024–16,384 pixels) and never resized a second time."""
    from tooliqa_agent.vision import pixel_bounds, presized_shape
    from tooliqa_tools import MagnifierConfig, gamma_correct, magnify, resize

    processor, _ = tiny_model
    low, high = pixel_bounds(processor)
    # 512 × 512 with a checkerboard of 4-px cells: grey in the 128 × 128 global view, clear in a quarter crop
    cells = torch.arange(512) // 4
    checker = ((cells[:, None] + cells[None, :]) % 2 * 255).to(torch.uint8).expand(3, 512, 512).contiguous()
    _, _, [t] = run(processor, [[RUBRIC, MAGNIFY, GAMMA, ANSWER]], images=(checker,))
    global_view, zoomed, corrected = t.images
    assert tuple(global_view.shape[1:]) == presized_shape(512, 512, processor) == (128, 128)
    assert zoomed.float().std() > 1.5 * global_view.float().std()  # the crop kept more of the pattern
    expected = magnify(checker, [0, 0, 500, 500], MagnifierConfig(min_pixels=low, max_pixels=high))[0]
    assert torch.equal(zoomed, expected.contiguous())  # cropped from the original, not from the global view
    assert t.turns[1].view.box == (0, 0, 256, 256)  # in the original's pixels
    assert torch.equal(corrected, resize([gamma_correct(checker, 0.5)], (128, 128))[0].contiguous())
    for view in (zoomed, corrected):
        assert low <= view.shape[1] * view.shape[2] <= high
        assert presized_shape(view.shape[1], view.shape[2], processor) == tuple(view.shape[1:])


def test_a_16_bit_original_is_seen_in_8_bits_and_brightened_from_its_16(tiny_model):
    """A uint16 original: the global view is its 8-bit rendering, the Gamma Corrector brightens all 16 bits (the
    shadow texture below one 8-bit step shows only there), the Magnifier crops the 8-bit rendering."""
    from tooliqa_tools import gamma_table16, to_uint8

    processor, _ = tiny_model
    cells = torch.arange(128) // 4  # 128 × 128 fits the kit's budget: no resize anywhere
    checker = (cells[:, None] + cells[None, :]) % 2
    deep = (257 + 100 * checker).to(torch.uint16).expand(3, 128, 128).contiguous()  # 8-bit level 1 ± 0.4 of a step
    _, _, [t] = run(processor, [[RUBRIC, GAMMA, ANSWER]], images=(deep,))
    global_view, corrected = t.images
    assert global_view.dtype == corrected.dtype == torch.uint8
    assert torch.equal(global_view, to_uint8(deep)) and global_view.unique().tolist() == [1]  # the texture is gone
    assert torch.equal(corrected, gamma_table16(0.5)[deep.long()])
    assert corrected.unique().tolist() == [16, 19]  # 255 · √(257 / 65535) = 16.0, 255 · √(357 / 65535) = 18.8


def test_an_original_of_another_pixel_type_is_refused_naming_the_image(tiny_model):
    processor, _ = tiny_model
    with pytest.raises(ValueError, match=r"image 0: the original must be a uint8 or uint16 \[3, H, W\] tensor"):
        run(processor, [[RUBRIC, ANSWER]], images=(torch.zeros(3, 96, 128),))
