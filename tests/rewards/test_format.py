"""Format reward: a well-formed trajectory passes; each protocol violation fails exactly its own check."""

from __future__ import annotations

import dataclasses

import pytest

from tooliqa_rewards import FORMAT_CHECKS, FormatRecord, RewardInputError, format_reward

from .helpers import ANSWER, CALL, GAMMA, GOOD, RUBRIC

P0_FORMAT = """<answer>
Sharpness: [Low/Medium/High] - Brief note
Noise: [None/Visible/Severe] - Brief note
Artifacts: [None/Minor/Severe] - Brief note
Exposure: [Poor/Good/Excellent] - Brief note
Saliency Visibility: [Subject Clear/Obscured] - Brief Note
</answer>"""  # the output format of the paper's P0 (the rewards package does not import the agent's prompts)


def failures(record: FormatRecord) -> tuple[str, ...]:
    result = format_reward([record])
    assert result.reward.tolist() == [float(not result.failed_checks(0))]
    return result.failed_checks(0)


def test_well_formed_trajectories_pass():
    assert failures(GOOD) == ()
    assert failures(dataclasses.replace(GOOD, action_texts=(ANSWER,), tool_calls_valid=())) == ()
    two_rounds = dataclasses.replace(GOOD, action_texts=(CALL, GAMMA, ANSWER), tool_calls_valid=(True, True))
    assert failures(two_rounds) == ()
    no_rubric = FormatRecord(None, (ANSWER,), (), 2.0, rubric_required=False)
    assert failures(no_rubric) == ()


@pytest.mark.parametrize(
    "rubric",
    [
        RUBRIC.replace("Medium -", "[Medium] -"),  # the P0 template's brackets
        RUBRIC.replace("Sharpness: Medium", "**Sharpness**: **Medium**"),  # markdown bold
        RUBRIC.replace("Noise: None - clean sky", "- Noise: None"),  # bullet, no note
        RUBRIC.replace("Subject Clear", "subject clear"),  # case
        RUBRIC.replace("\nNoise", "\n\nNoise"),  # blank line between attributes
    ],
)
def test_rubric_variants_that_pass(rubric):
    assert failures(dataclasses.replace(GOOD, rubric_text=rubric)) == ()


@pytest.mark.parametrize(
    "rubric",
    [
        RUBRIC.replace("Medium", "Blurry"),  # level not allowed
        RUBRIC.replace("Noise: None", "Noise: Minor"),  # a level of another attribute
        RUBRIC.replace("Saliency Visibility: Subject Clear - Brief Note\n", ""),  # a missing attribute
        RUBRIC.replace("Noise: None - clean sky\nArtifacts: Minor", "Artifacts: Minor - x\nNoise: None"),  # order
        RUBRIC.replace("Exposure: Good", "Exposure: Goodish"),  # a longer word is not the level
        RUBRIC.replace("<thinking>", ""),  # no thinking block
        RUBRIC.replace("</answer>", ""),  # unclosed answer
        RUBRIC + " trailing text",  # text after the answer
        RUBRIC.replace("balanced", "balanced</answer><answer>"),  # a second answer block
        RUBRIC.replace("Medium", "Low/Medium"),  # two levels
        RUBRIC.replace("Medium", "[Low / Medium]"),
        RUBRIC.replace("Subject Clear", "[Subject Clear|Obscured]"),
        RUBRIC.replace("Medium -", "[Medium -"),  # an unclosed bracket
    ],
)
def test_rubric_violations_fail_the_rubric_check_only(rubric):
    assert failures(dataclasses.replace(GOOD, rubric_text=rubric)) == ("rubric",)


def test_missing_rubric_fails_only_where_required():
    assert failures(dataclasses.replace(GOOD, rubric_text=None)) == ("rubric",)
    assert failures(dataclasses.replace(GOOD, rubric_text=None, rubric_required=False)) == ()
    # a rubric turn that is present is checked even when not required
    assert failures(dataclasses.replace(GOOD, rubric_text="hello", rubric_required=False)) == ("rubric",)


@pytest.mark.parametrize(
    "answer",
    [
        "<answer>3.75</answer>",  # no thinking
        "<thinking>a</thinking><thinking>b</thinking><answer>3.75</answer>",  # two thinking blocks
        "<thinking>a</thinking><answer>3.75</answer><answer>4</answer>",  # two answers
        "<thinking>a</thinking> so <answer>3.75</answer>",  # text between the blocks
        "Final: <thinking>a</thinking><answer>3.75</answer>",  # text before
        "<thinking>a <answer>2</answer></thinking><answer>3.75</answer>",  # an action inside thinking
    ],
)
def test_malformed_final_turn_fails_the_turns_check_only(answer):
    assert failures(dataclasses.replace(GOOD, action_texts=(CALL, answer))) == ("turns",)


def test_tool_call_and_answer_in_one_turn():
    both = CALL + "\n<answer>3.75</answer>"  # two actions in one turn; the answer wins, so no extra round
    assert failures(dataclasses.replace(GOOD, action_texts=(both,), tool_calls_valid=())) == ("turns",)


def test_final_turn_must_answer_and_earlier_turns_must_call():
    ends_with_call = dataclasses.replace(GOOD, action_texts=(CALL,), score=None)
    assert failures(ends_with_call) == ("final_answer", "score")
    answer_then_answer = dataclasses.replace(GOOD, action_texts=(ANSWER, ANSWER), tool_calls_valid=())
    assert failures(answer_then_answer) == ("final_answer",)
    no_actions = dataclasses.replace(GOOD, action_texts=(), tool_calls_valid=(), score=None)
    assert failures(no_actions) == ("turns", "final_answer", "score")


def test_failed_tool_call_fails_the_tool_calls_check_only():
    assert failures(dataclasses.replace(GOOD, tool_calls_valid=(False,))) == ("tool_calls",)


@pytest.mark.parametrize("score", [None, 0.99, 5.01, float("nan"), float("inf")])
def test_missing_or_out_of_range_score_fails_the_score_check_only(score):
    assert failures(dataclasses.replace(GOOD, score=score)) == ("score",)


@pytest.mark.parametrize("score", [1.0, 5.0])
def test_score_bounds_are_inclusive(score):
    assert failures(dataclasses.replace(GOOD, score=score)) == ()


def test_too_many_tool_rounds():
    three = dataclasses.replace(GOOD, action_texts=(CALL, GAMMA, CALL, ANSWER), tool_calls_valid=(True,) * 3)
    assert failures(three) == ("tool_rounds",)
    assert failures(dataclasses.replace(three, max_tool_rounds=3)) == ()


def test_batch_reward_breakdown_and_rates():
    records = [GOOD, dataclasses.replace(GOOD, score=None), dataclasses.replace(GOOD, tool_calls_valid=(False,)), GOOD]
    result = format_reward(records)
    assert result.reward.tolist() == [1.0, 0.0, 0.0, 1.0]
    assert result.checks == tuple(FORMAT_CHECKS)
    assert tuple(result.passed.shape) == (4, len(FORMAT_CHECKS))
    rates = dict(result.failure_rates())
    assert rates["score"] == 0.25 and rates["tool_calls"] == 0.25 and rates["rubric"] == 0.0


def test_empty_batch():
    result = format_reward([])
    assert tuple(result.reward.shape) == (0,) and tuple(result.passed.shape) == (0, len(FORMAT_CHECKS))
    assert all(rate == 0.0 for _, rate in result.failure_rates())


def test_bad_record_raises_a_named_error():
    with pytest.raises(RewardInputError, match="action_texts must be a tuple"):
        FormatRecord(RUBRIC, [ANSWER], (), 3.0)
    with pytest.raises(RewardInputError, match="rubric_text must be str or None"):
        FormatRecord(3, (ANSWER,), (), 3.0)


def test_long_adversarial_text_is_fast():
    """Possessive patterns: a long tag-free or '<'-heavy text is matched in linear time."""
    blob = "<thinking>" + "a < b <thinkin " * 20_000 + "</thinking><answer>3</answer>"
    result = format_reward([dataclasses.replace(GOOD, action_texts=(blob,), tool_calls_valid=())] * 2)
    assert result.reward.tolist() == [1.0, 1.0]


def test_the_p0_template_copied_verbatim_is_not_a_rubric():
    """P0's own output format ("Sharpness: [Low/Medium/High] - Brief note", …) chooses no level: it fails."""
    assert failures(dataclasses.replace(GOOD, rubric_text="<thinking>x</thinking>\n" + P0_FORMAT)) == ("rubric",)
    # the same lines with one level chosen in each pass
    chosen = P0_FORMAT
    for levels, level in (
        ("Low/Medium/High", "High"),
        ("None/Visible/Severe", "None"),
        ("None/Minor/Severe", "Minor"),
        ("Poor/Good/Excellent", "Good"),
        ("Subject Clear/Obscured", "Obscured"),
    ):
        chosen = chosen.replace(levels, level)
    assert failures(dataclasses.replace(GOOD, rubric_text="<thinking>x</thinking>\n" + chosen)) == ()


def test_the_reasoning_tag_follows_the_prompt():
    """VisualQuality-R1's single-turn question asks for <think>…</think>: with that tag, its answers pass."""
    vqr1 = FormatRecord(None, ("<think>Sharp, clean.</think> <answer>4.20</answer>",), (), 4.2, rubric_required=False)
    assert failures(vqr1) == ("turns",)  # the default tag is P0/PG's <thinking>
    assert failures(dataclasses.replace(vqr1, thinking_tag="think")) == ()
    thinking = dataclasses.replace(vqr1, action_texts=(ANSWER,), thinking_tag="think")
    assert failures(thinking) == ("turns",)  # the other protocol's tag is not the prompt's
    with pytest.raises(RewardInputError, match="thinking_tag must be a tag name"):
        dataclasses.replace(vqr1, thinking_tag="th>ink")
