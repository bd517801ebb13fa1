"""The safe tool-call parser: the last ``<tool_call>…</tool_call>`` block, ``json.loads`` only, schema-checked.

Rules (SPEC §2–3): the call is the turn's last complete block; an unclosed ``<tool_call>`` after it, a nested tag,
or a second block that also holds a JSON call is an error (exactly one call per turn — an earlier block that is not
JSON, e.g. the gate prompt's ``<tool_call>...</tool_call>`` echoed in the reasoning, is ignored). The JSON must be
``{"name": <tool>, "arguments": {...}}`` naming an enabled tool with arguments its schema accepts. Every failure
raises ``ToolError`` with a reason fit to show the model.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from tooliqa_tools.errors import ToolError
from tooliqa_tools.types import ToolCall

if TYPE_CHECKING:
    from tooliqa_tools.toolkit import Toolkit

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_BLOCK = re.compile(re.escape(OPEN) + r"(.*?)" + re.escape(CLOSE), re.DOTALL)
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


def _is_call(content: str) -> bool:
    try:
        return isinstance(decode_json(content), dict)
    except ToolError:
        return False


def parse_tool_call(turn_text: str, toolkit: Toolkit) -> ToolCall:
    """The one tool call of an assistant turn, checked against ``toolkit``; raises ``ToolError`` otherwise."""
    if not isinstance(turn_text, str):
        raise ToolError(f"the turn must be text, got {type(turn_text).__name__}")
    matches = list(_BLOCK.finditer(turn_text))
    tail = turn_text[matches[-1].end() :] if matches else turn_text
    if OPEN in tail:
        raise ToolError(f"a {OPEN} tag is not closed with {CLOSE}")
    if not matches:
        raise ToolError(f"no {OPEN}...{CLOSE} block in the turn")
    content = matches[-1].group(1)
    if OPEN in content:
        raise ToolError(f"nested {OPEN} tags; write one {OPEN}{{json}}{CLOSE} block")
    call = decode_json(content.strip())
    earlier = sum(_is_call(match.group(1).strip()) for match in matches[:-1])
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
