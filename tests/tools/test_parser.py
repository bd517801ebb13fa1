"""The safe parser: last block, JSON only, schema-checked, exactly one call, every failure a ToolError."""

from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tooliqa_tools import ToolCall, ToolError, make_toolkit, parse_tool_call

BOTH = make_toolkit("both")
MAG = '{"name": "magnifier", "arguments": {"bbox_2d": [120, 250, 480, 610]}}'
GAM = '{"name": "gamma_corrector", "arguments": {"mode": "brighten"}}'


def block(payload: str) -> str:
    return f"<tool_call>\n{payload}\n</tool_call>"


def test_valid_calls_and_canonical_json():
    turn = f"<thinking>The shadows hide detail.</thinking> {block(GAM)}"
    assert BOTH.parse(turn) == ToolCall("gamma_corrector", '{"mode": "brighten"}')
    call = parse_tool_call(block(MAG), BOTH)
    assert call == ToolCall("magnifier", '{"bbox_2d": [120, 250, 480, 610]}')
    assert call.arguments() == {"bbox_2d": [120, 250, 480, 610]}
    reordered = block('{"arguments": {"gamma": 2.5, "mode": "darken"}, "name": "gamma_corrector"}')
    assert BOTH.parse(reordered).arguments_json == '{"gamma": 2.5, "mode": "darken"}'


def test_the_last_block_is_the_call_and_an_echoed_template_is_ignored():
    # The gate prompt itself contains "<tool_call>...</tool_call>"; a model that echoes it has still made one call.
    turn = f"<thinking>Option B) Tool call: <thinking>...</thinking> <tool_call>...</tool_call></thinking>{block(MAG)}"
    assert BOTH.parse(turn).name == "magnifier"


@pytest.mark.parametrize(
    ("turn", "message"),
    [
        ("<answer>3.5</answer>", "no <tool_call>...</tool_call> block"),
        (f"<tool_call>{MAG}", "not closed"),  # truncated generation
        (f"{block(MAG)} <tool_call>{GAM}", "not closed"),  # a second call cut off
        (f"</tool_call>{MAG}", "no <tool_call>"),
        (f"<tool_call><tool_call>{MAG}</tool_call></tool_call>", "nested"),
        (block(MAG) + block(GAM), "exactly one tool call per turn, got 2"),
        (block(f"[{MAG}, {GAM}]"), "exactly one tool call per turn, got a list of 2"),
        (block("magnifier(bbox_2d=[1, 2, 3, 4])"), "not valid JSON"),
        (block("{'name': 'magnifier'}"), "not valid JSON"),
        (block(MAG[:-1]), "not valid JSON"),
        (block("[" * 100_000), "not valid JSON|nested too deeply"),
        (block("1" * 5000), "not valid JSON"),  # over Python's int-digit limit
        (block('"magnifier"'), "must be a JSON object"),
        (block('{"name": "magnifier", "arguments": {"bbox_2d": [1, 2, 3, 4]}, "id": 7}'), "unexpected key 'id'"),
        (block('{"arguments": {"mode": "darken"}}'), 'needs a "name"'),
        (block('{"name": "gamma_corrector"}'), 'needs an "arguments" object'),
        (
            block('{"name": "zoom", "arguments": {}}'),
            "unknown tool 'zoom'; available tools: magnifier, gamma_corrector",
        ),
        (block('{"name": "magnifier", "arguments": "[1, 2, 3, 4]"}'), "magnifier: arguments must be a JSON object"),
        (block('{"name": "magnifier", "arguments": {}}'), "magnifier: missing required argument 'bbox_2d'"),
        (
            block('{"name": "magnifier", "arguments": {"bbox_2d": [1, 2, 3]}}'),
            "magnifier: bbox_2d needs 4 numbers, got 3",
        ),
        (block('{"name": "magnifier", "arguments": {"bbox_2d": [1, 2, "3", 4]}}'), "bbox_2d needs numbers"),
        (block('{"name": "magnifier", "arguments": {"bbox_2d": [1, 2, NaN, 4]}}'), "bbox_2d needs finite numbers"),
        (
            block('{"name": "magnifier", "arguments": {"bbox_2d": [1, 2, 3, 4], "label": "a cat"}}'),
            "unexpected argument",
        ),
        (block('{"name": "gamma_corrector", "arguments": {"mode": "lighten"}}'), "mode must be one of"),
        (block('{"name": "gamma_corrector", "arguments": {"mode": "darken", "gamma": 9}}'), r"within \[0.2, 5\]"),
        (
            block('{"name": "gamma_corrector", "arguments": {"mode": "darken", "gamma": 0.5}}'),
            "'darken' needs gamma > 1",
        ),
        (block('{"name": "gamma_corrector", "arguments": {"mode": "brighten", "gamma": 1}}'), "needs gamma < 1"),
        (block('{"name": "gamma_corrector", "arguments": {"mode": "brighten", "gamma": true}}'), "finite number"),
    ],
)
def test_failures_are_tool_errors_naming_the_problem(turn, message):
    with pytest.raises(ToolError, match=message):
        BOTH.parse(turn)


def test_disabled_tools_are_refused():
    with pytest.raises(ToolError, match="no tools are available"):
        make_toolkit("none").parse(block(MAG))
    with pytest.raises(ToolError, match="unknown tool 'gamma_corrector'; available tools: magnifier"):
        make_toolkit("magnifier").parse(block(GAM))
    assert make_toolkit("gamma").parse(block(GAM)).name == "gamma_corrector"


def test_non_text_turn():
    with pytest.raises(ToolError, match="must be text"):
        BOTH.parse(None)


def test_tool_error_survives_pickling():
    import pickle

    error = ToolError("magnifier: bbox_2d needs 4 numbers, got 3", tool="magnifier")
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) and copy.tool == "magnifier" and isinstance(copy, ValueError)


def test_canonical_json_round_trips():
    call = BOTH.parse(block('{"name": "magnifier", "arguments": {"bbox_2d": [1.5, 2, 3e2, 4]}}'))
    assert json.loads(call.arguments_json) == {"bbox_2d": [1.5, 2, 300.0, 4]}


def _hostile(n: int) -> dict[str, str]:
    """Text of about ``n`` characters shaped against a tag scanner: unclosed, stray and empty tags, many blocks."""

    def repeat(piece: str) -> str:
        return piece * (n // len(piece))

    return {
        "unclosed opens": repeat("<tool_call>"),
        "open then text": "<tool_call>" + "x" * n,
        "stray closes": repeat("</tool_call>"),
        "empty blocks": repeat("<tool_call></tool_call>"),
        "junk blocks": repeat("<tool_call>x</tool_call>"),
        "object blocks": repeat("<tool_call>{}</tool_call>"),
        "deep json": "<tool_call>" + "[" * n + "</tool_call>",
    }


def test_hostile_text_is_parsed_in_linear_time():
    """1 MB of hostile text in well under a second (≈ 30 ms on a CPU core); the lazy-regex scan took > 2 min.

    The bound is 10× the 50 ms target so only a quadratic regression fails it; 100 KB goes first, so a regression
    fails in seconds rather than hanging."""
    import time

    for n in (100_000, 1_000_000):
        for name, text in _hostile(n).items():
            best = math.inf
            for _ in range(3):
                start = time.perf_counter()
                with pytest.raises(ToolError):
                    BOTH.parse(text)
                best = min(best, time.perf_counter() - start)
            assert best < 0.5, f"{name}, {n} characters: {best:.2f} s"


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(st.lists(st.sampled_from(["<tool_call>", "</tool_call>", "<tool_call", "tool_call>", "{}", "a", "<", ">"])))
def test_blocks_pair_tags_as_the_lazy_regex_does(pieces):
    from tooliqa_tools.parser import _blocks

    text = "".join(pieces)
    matches = list(re.finditer(r"<tool_call>(.*?)</tool_call>", text, re.DOTALL))
    tail = text[matches[-1].end() :] if matches else text
    blocks, rest = _blocks(text)
    assert blocks == [m.group(1) for m in matches]
    assert ("<tool_call>" in rest) == ("<tool_call>" in tail)
