"""The safe tool-call parser: the last ``<tool_call>…</tool_call>`` block, ``json.loads`` only, schema-checked.

Rules (SPEC §2–3): the call is the turn's last complete block; an unclosed ``<tool_call>`` after it, a nested tag,
or a second block that also holds a JSON call is an error (exactly one call per turn — an earlier block that is not
JSON, e.g. the gate prompt's ``<tool_call>...</tool_call>`` echoed in the reasoning, is ignored). The JSON must be
``{"name": <tool>, "arguments": {...}}`` naming an enabled tool with arguments its schema accepts. Every failure
raises ``ToolError`` with a reason fit to show the model. Parsing is linear in the turn's length (model text is
untrusted: a regex with a lazy ``.*?`` rescans to the end from every unclosed tag, quadratic on hostile text).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING

from tooliqa_tools.errors import ToolError
from tooliqa_tools.types import ToolCall

if TYPE_CHECKING:
    from tooliqa_tools.toolkit import Toolkit

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_CALL_KEYS = ("name", "arguments")


def decode_json(content: str) -> object:
    """``json.loads`` with every failure (syntax, absurd nesting, over-long integers) as ``ToolError``."""
    try:
        return json.loads(content)
    except RecursionError:
        raise ToolError("the tool call JSON is nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, and int-digit limits
        reason = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
        raise ToolError(f"the tool call is not valid JSON ({reason})") from None


def _blocks(text: str) -> tuple[list[str], str]:
    """(contents of the complete blocks, the text after the last ``CLOSE``), paired as ``<tool_call>(.*?)</tool_call>``
    matches left to right: a block opens at the first ``OPEN`` of a piece between two ``CLOSE`` tags (the tags cannot
    overlap). One ``split``: linear, and the per-block work stays in C."""
    *closed, tail = text.split(CLOSE)
    return [piece.partition(OPEN)[2] for piece in closed if OPEN in piece], tail


def _is_call(content: str) -> bool:
    if not content.startswith("{"):  # only an object can be a call: skip json.loads and its exception
        return False
    try:
        return isinstance(decode_json(content), dict)
    except ToolError:
        return False


def parse_tool_call(turn_text: str, toolkit: Toolkit) -> ToolCall:
    """The one tool call of an assistant turn, checked against ``toolkit``; raises ``ToolError`` otherwise."""
    if not isinstance(turn_text, str):
        raise ToolError(f"the turn must be text, got {type(turn_text).__name__}")
    blocks, tail = _blocks(turn_text)
    if OPEN in tail:
        raise ToolError(f"a {OPEN} tag is not closed with {CLOSE}")
    if not blocks:
        raise ToolError(f"no {OPEN}...{CLOSE} block in the turn")
    content = blocks[-1]
    if OPEN in content:
        raise ToolError(f"nested {OPEN} tags; write one {OPEN}{{json}}{CLOSE} block")
    call = decode_json(content.strip())
    earlier_blocks = Counter(block.strip() for block in blocks[:-1])  # a repeated block is decoded once
    earlier = sum(count for block, count in earlier_blocks.items() if _is_call(block))
    if isinstance(call, list):
        raise ToolError(f"exactly one tool call per turn, got a list of {len(call)}")
    if earlier:
        raise ToolError(f"exactly one tool call per turn, got {earlier + 1}")
    if not isinstance(call, dict):
        raise ToolError('the tool call must be a JSON object {"name": ..., "arguments": {...}}')
    for key in call:
        if key not in _CALL_KEYS:
            raise ToolError(f'unexpected key {key!r:.40} in the tool call (expected "name" and "arguments")')
    name = call.get("name")
    if not isinstance(name, str):
        raise ToolError('the tool call needs a "name" string')
    tool = toolkit.tool(name)
    if "arguments" not in call:
        raise ToolError(f'{name}: the tool call needs an "arguments" object', tool=name)
    arguments = tool.check(call["arguments"])
    return ToolCall(name=name, arguments_json=json.dumps(arguments, sort_keys=True, allow_nan=False))
