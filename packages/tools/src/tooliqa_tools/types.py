"""Plain data passed between the parser, the toolkit and the agent."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class ToolCall:
    """One parsed, schema-checked tool call."""

    name: str
    """Tool name, one of the toolkit's ``names``."""
    arguments_json: str
    """The arguments as canonical JSON (sorted keys), e.g. ``'{"bbox_2d": [120, 250, 480, 610]}'``."""

    def arguments(self) -> dict[str, Any]:
        """The arguments decoded (a fresh dict each call)."""
        return json.loads(self.arguments_json)


@dataclass(frozen=True)
class ToolView:
    """One executed call's result: the view image and what it shows."""

    image: torch.Tensor
    """uint8 ``[3, h, w]`` on the original's device, both sides multiples of the config's ``multiple`` (32). CPU
    magnifier views keep the channels-last memory of the fast resize kernel (``.contiguous()`` for CHW memory)."""
    tool: str
    """"magnifier" or "gamma_corrector"."""
    box: tuple[int, int, int, int] | None
    """Magnifier: the pixel box ``(x1, y1, x2, y2)`` actually cropped from the original (after clamp/grow)."""
    gamma: float | None
    """Gamma Corrector: the γ applied."""
    description: str
    """One line for the observation prompt, e.g. "Magnified view of region [120, 250, 480, 610] of the original image."."""
