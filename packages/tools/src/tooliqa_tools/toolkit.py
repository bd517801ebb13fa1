"""The enabled tool set of a protocol (none / magnifier / gamma / both): schemas, parsing and batched execution."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch

from tooliqa_tools.config import DEFAULT_GAMMA, DEFAULT_MAGNIFIER, GammaConfig, MagnifierConfig
from tooliqa_tools.errors import ToolError
from tooliqa_tools.ops.depth import check_original
from tooliqa_tools.parser import decode_json, parse_tool_call
from tooliqa_tools.tools import GammaCorrector, Magnifier, Tool
from tooliqa_tools.types import ToolCall, ToolView

TOOLKITS: dict[str, tuple[str, ...]] = {
    "none": (),
    "magnifier": (Magnifier.name,),
    "gamma": (GammaCorrector.name,),
    "both": (Magnifier.name, GammaCorrector.name),
}
"""Toolkit name (the ablation switch of paper Tables 4, 5, 9, 11) → enabled tool names, in schema order."""


class Toolkit:
    """An ordered set of enabled tools."""

    def __init__(self, tools: Sequence[Tool]) -> None:
        self._tools = {tool.name: tool for tool in tools}
        self.names: tuple[str, ...] = tuple(self._tools)
        """Enabled tool names, in schema order."""

    def __repr__(self) -> str:
        return f"Toolkit(names={self.names})"

    def tool(self, name: str) -> Tool:
        """The enabled tool called ``name``; ``ToolError`` (fit for the model) when there is none."""
        if name in self._tools:
            return self._tools[name]
        if not self._tools:
            raise ToolError(f"no tools are available, so {name!r:.40} cannot be called; give the final answer")
        raise ToolError(f"unknown tool {name!r:.40}; available tools: {', '.join(self.names)}")

    def schemas(self) -> list[dict]:
        """The tools' schemas for ``apply_chat_template(tools=...)``, in the paper's Qwen3 function format."""
        return [tool.schema().to_dict() for tool in self._tools.values()]

    def parse(self, turn_text: str) -> ToolCall:
        """The turn's one tool call (see ``parse_tool_call``); raises ``ToolError``."""
        return parse_tool_call(turn_text, self)

    def run(self, originals: Sequence[torch.Tensor], calls: Sequence[ToolCall]) -> list[ToolView | ToolError]:
        """Execute ``calls[i]`` on ``originals[i]`` (uint8 or uint16 ``[3, H_i, W_i]``, sizes may differ); the views
        are uint8.

        Calls of one tool run as one batched op call (grouped further by shape inside it). A call that fails
        validation yields its ``ToolError`` in its slot; the others still run.
        """
        if len(originals) != len(calls):
            raise ValueError(f"Toolkit.run needs one original per call, got {len(originals)} and {len(calls)}")
        results: list[ToolView | ToolError | None] = [None] * len(calls)
        pending: dict[str, list[tuple[int, object]]] = defaultdict(list)
        for index, (original, call) in enumerate(zip(originals, calls)):
            check_original(original, f"Toolkit.run: original {index}")
            try:
                tool = self.tool(call.name)
                # Re-checked here: a ToolCall may be built by hand (scripted engines, tests), not only by parse().
                arguments = tool.check(decode_json(call.arguments_json))
                plan = tool.plan(arguments, original.shape[-2], original.shape[-1])
            except ToolError as error:
                results[index] = error
                continue
            pending[tool.name].append((index, plan))
        for name, items in pending.items():
            views = self._tools[name].execute([originals[i] for i, _ in items], [plan for _, plan in items])
            for (index, _), view in zip(items, views):
                results[index] = view
        return results


def make_toolkit(
    name: str = "both", magnifier: MagnifierConfig = DEFAULT_MAGNIFIER, gamma: GammaConfig = DEFAULT_GAMMA
) -> Toolkit:
    """Build a registered toolkit: ``name`` in ``TOOLKITS`` ("none" | "magnifier" | "gamma" | "both")."""
    if name not in TOOLKITS:
        raise ValueError(f"unknown toolkit {name!r}; choose one of {', '.join(TOOLKITS)}")
    available = {tool.name: tool for tool in (Magnifier(magnifier), GammaCorrector(gamma))}
    return Toolkit([available[tool_name] for tool_name in TOOLKITS[name]])
