"""Tool schemas in the paper's Qwen3 function format, and the generic argument check they drive.

Rendered form (paper App. A, "as per Qwen3"; note the non-standard ``range``)::

    {"name": ..., "description": ...,
     "parameters": {"<param>": {"type": ..., "range": [min, max], "description": ...}, ...},
     "required": [...]}
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Literal

from tooliqa_tools.errors import ToolError


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)  # JSON true/false are not numbers


def _finite(value: numbers.Real) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an int too large for a float
        return False


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of a tool."""

    name: str
    """Argument key, e.g. "bbox_2d"."""
    type: Literal["array", "string", "number"]
    """JSON type. "array" means an array of numbers."""
    description: str
    """Usage info shown to the model."""
    range: tuple[float, float] | None = None
    """``[min, max]``. Enforced for numbers; for arrays (boxes) it only documents the coordinate grid — the
    magnifier clamps boxes into the image instead of rejecting them (SPEC §3)."""
    enum: tuple[str, ...] | None = None
    """Allowed values of a string."""
    length: int | None = None
    """Exact item count of an array."""
    required: bool = True
    """Whether the call must give it."""

    def to_dict(self) -> dict[str, Any]:
        """The parameter as rendered in the schema."""
        out: dict[str, Any] = {"type": self.type}
        if self.type == "array":
            out["items"] = {"type": "number"}
        if self.enum is not None:
            out["enum"] = list(self.enum)
        if self.range is not None:
            out["range"] = list(self.range)
        out["description"] = self.description
        return out

    def check(self, tool: str, value: object) -> object:
        """``value`` if it has this parameter's type (and enum / range / length); else ``ToolError``."""
        name = f"{tool}: {self.name}"
        if self.type == "array":
            if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
                count = f"{self.length} " if self.length else ""
                raise ToolError(f"{name} must be a list of {count}numbers, got {_show(value)}", tool=tool)
            if self.length is not None and len(value) != self.length:
                raise ToolError(f"{name} needs {self.length} numbers, got {len(value)}", tool=tool)
            for item in value:
                if not _is_number(item):
                    raise ToolError(f"{name} needs numbers, got {_show(item)} among them", tool=tool)
                if not _finite(item):
                    raise ToolError(f"{name} needs finite numbers, got {_show(item)}", tool=tool)
            return list(value)
        if self.type == "string":
            if not isinstance(value, str):
                raise ToolError(f"{name} must be a string, got {_show(value)}", tool=tool)
            if self.enum is not None and value not in self.enum:
                choices = ", ".join(repr(choice) for choice in self.enum)
                raise ToolError(f"{name} must be one of {choices}, got {_show(value)}", tool=tool)
            return value
        if not _is_number(value) or not _finite(value):
            raise ToolError(f"{name} must be a finite number, got {_show(value)}", tool=tool)
        if self.range is not None and not self.range[0] <= value <= self.range[1]:
            raise ToolError(f"{name} must be within [{self.range[0]:g}, {self.range[1]:g}], got {value:g}", tool=tool)
        return value


@dataclass(frozen=True)
class ToolSchema:
    """A tool's self-description for the chat template's ``tools=``, and its argument contract."""

    name: str
    """Function name the model calls."""
    description: str
    """What the tool does, shown to the model."""
    params: tuple[ParamSpec, ...]
    """Parameters in display order."""

    def to_dict(self) -> dict[str, Any]:
        """The paper's Qwen3 function format."""
        return {
            "name": self.name,
            "description": self.description,
            "parameters": {param.name: param.to_dict() for param in self.params},
            "required": [param.name for param in self.params if param.required],
        }

    def check(self, arguments: object) -> dict[str, object]:
        """Check a decoded ``arguments`` object: a JSON object, no unknown keys, required keys, typed values.

        Returns the checked arguments (a new dict); raises ``ToolError`` naming the first problem.
        """
        if not isinstance(arguments, dict):
            raise ToolError(f"{self.name}: arguments must be a JSON object, got {_show(arguments)}", tool=self.name)
        known = {param.name: param for param in self.params}
        for key in arguments:
            if key not in known:
                accepted = ", ".join(known)
                raise ToolError(f"{self.name}: unexpected argument {_show(key)} (accepted: {accepted})", tool=self.name)
        checked: dict[str, object] = {}
        for param in self.params:
            if param.name in arguments:
                checked[param.name] = param.check(self.name, arguments[param.name])
            elif param.required:
                raise ToolError(f"{self.name}: missing required argument {param.name!r}", tool=self.name)
        return checked
