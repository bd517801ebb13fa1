"""Property tests: any box and any turn text either works or raises ToolError — nothing else.

Examples are drawn from large pools of hostile inputs built from pieces (NaN, inf, huge ints, strings, nested lists,
tensors, truncated and nested tags, two calls, extra keys, …): one draw per example, because hypothesis's own
per-example cost dominates these fast checks and the suite has a time budget.
"""

from __future__ import annotations

import itertools
import json
import math
import random

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tooliqa_tools import MagnifierConfig, ToolError, ToolView, magnify, make_toolkit

SETTINGS = settings(
    max_examples=2000, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
IMAGE = torch.randint(0, 256, (3, 32, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
TOOLKIT = make_toolkit("both")

NUMBERS = [0, 1, 5.5, 27, 28, 100, 333.3, 499.9, 500, 640, 999, 1000, 1001, 2000, -1, -0.0, -1000, 1e-9, 0.25]
NUMBERS += [0.5, 0.75, 0.999, 1e300, -1e300, 10**400, 2**63, -(2**70), math.nan, math.inf, -math.inf, 5e-324]
JUNK = [None, True, False, "", "12", "abc", [], [1, 2], [[1, 2, 3, 4]], {}, {"x1": 1}, b"1234", "[1, 2, 3, 4]"]
JUNK += [torch.tensor([0.0, 0.0, 500.0, 500.0]), torch.tensor([math.nan, 0, 1, 1]), torch.tensor([1, 2, 3])]
_rng = random.Random(0)
BOXES = [list(box) for box in itertools.product(NUMBERS[::2], repeat=4)]  # the usual shape, hostile values
BOXES += [[_rng.uniform(-100, 1100) for _ in range(4)] for _ in range(30_000)]  # ordinary boxes, some inverted


def _ordered_box() -> list[float]:
    x1, x2 = sorted(_rng.uniform(-100, 1100) for _ in range(2))
    y1, y2 = sorted(_rng.uniform(-100, 1100) for _ in range(2))
    return [x1, y1, x2, y2]


BOXES += [_ordered_box() for _ in range(40_000)]  # mostly valid: clamping, growth, aspect limits
BOXES += [_rng.choices(NUMBERS + JUNK, k=_rng.randint(0, 6)) for _ in range(20_000)]  # wrong lengths, mixed types
BOXES += JUNK
boxes = st.sampled_from(BOXES)


@SETTINGS
@given(box=boxes, coords=st.sampled_from(["qwen1000", "pixel", "unit"]))
def test_any_box_works_or_raises_tool_error(box, coords):
    try:
        [view] = magnify(IMAGE, box, MagnifierConfig(coords=coords))
    except ToolError as error:
        assert str(error).startswith("magnifier: ")
        return
    assert view.dtype == torch.uint8 and view.shape[-2] % 32 == 0 and view.shape[-1] % 32 == 0


def _call(name: object, arguments: object, **extra: object) -> str:
    return json.dumps({"name": name, "arguments": arguments, **extra})


ARGUMENTS = [
    {"bbox_2d": [120, 250, 480, 610]},
    {"bbox_2d": [0, 0, 1000, 1000]},
    {"bbox_2d": [900, 900, 100, 100]},
    {"bbox_2d": [1, 2, 3]},
    {"bbox_2d": [1, 2, 3, 4, 5]},
    {"bbox_2d": ["1", 2, 3, 4]},
    {"bbox_2d": [1, 2, None, 4]},
    {"bbox_2d": [[1, 2], [3, 4]]},
    {"bbox_2d": "0 0 10 10"},
    {"bbox_2d": [0, 0, 10, 10], "label": "cat"},
    {"mode": "brighten"},
    {"mode": "darken", "gamma": 2.5},
    {"mode": "darken", "gamma": 0.5},
    {"mode": "brighten", "gamma": 0.1},
    {"mode": "lighten"},
    {"mode": ["brighten"]},
    {"gamma": 2.0},
    {},
    [],
    "brighten",
    None,
]
PAYLOADS = [_call(name, args) for name in ("magnifier", "gamma_corrector") for args in ARGUMENTS]
PAYLOADS += [
    _call("zoom", {"bbox_2d": [1, 2, 3, 4]}),
    _call(7, {"mode": "darken"}),
    _call("magnifier", {"bbox_2d": [1, 2, 30, 40]}, id=3),
    _call("gamma_corrector", {"mode": "darken"}, type="function"),
    '{"name": "magnifier"}',
    '{"arguments": {"mode": "darken"}}',
    '{"name": "gamma_corrector", "arguments": {"mode": "darken", "gamma": NaN}}',
    '{"name": "magnifier", "arguments": {"bbox_2d": [1, 2, Infinity, 4]}}',
    '{"name": "magnifier", "arguments": {"bbox_2d": [1, 2, 1e999, 4]}}',
    "[" + _call("gamma_corrector", {"mode": "darken"}) + "]",
    "{'name': 'magnifier'}",
    "null",
    "[[[[[[[[[[[[",
    "1" * 5000,
]
PAYLOADS += [payload[: len(payload) // 2] for payload in PAYLOADS[:6]]  # truncated JSON
TAGS = ["<tool_call>", "</tool_call>", "<tool_call>\n", "\n</tool_call>", "<tool_call>...</tool_call>"]
OTHER = ["<thinking>dark image</thinking>", "<answer>3.2</answer>", " ", "\n", "{", "}", '"', ":", ","]
FRAGMENTS = TAGS + OTHER + PAYLOADS + [f"<tool_call>{payload}</tool_call>" for payload in PAYLOADS]
FRAGMENTS += ["é", "\x00", "<tool_", "call>", "</tool", "<TOOL_CALL>", "```json", "```"]
TURNS = ["".join(_rng.choices(FRAGMENTS, k=_rng.randint(0, 7))) for _ in range(30_000)]  # anything goes
TURNS += [  # one call among noise: reaches the schema checks and the tools far more often
    "".join(_rng.choices(OTHER + TAGS, k=_rng.randint(0, 2)))
    + f"<tool_call>{_rng.choice(PAYLOADS)}</tool_call>"
    + "".join(_rng.choices(OTHER, k=_rng.randint(0, 2)))
    for _ in range(30_000)
]
turns = st.sampled_from(TURNS)


@SETTINGS
@given(turn=turns)
def test_any_turn_parses_and_runs_or_raises_tool_error(turn):
    try:
        call = TOOLKIT.parse(turn)
    except ToolError as error:
        assert str(error)
        return
    [result] = TOOLKIT.run([IMAGE], [call])
    assert isinstance(result, ToolView | ToolError)
    if isinstance(result, ToolView):
        assert result.image.shape[-2] % 32 == 0 and result.image.shape[-1] % 32 == 0
