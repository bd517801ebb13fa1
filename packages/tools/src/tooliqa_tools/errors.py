"""The one error type of the tools package: every bad tool call, at any stage, is a ``ToolError``."""

from __future__ import annotations


class ToolError(ValueError):
    """A tool call that cannot be executed. ``str(err)`` is a ready failure reason to show the model.

    The message names the tool (when known) and what is wrong, e.g. ``"magnifier: bbox_2d needs 4 numbers, got 3"``;
    the agent embeds it in its failure turn ("Tool call failed: <reason>. Nothing was executed.").
    """

    def __init__(self, message: str, *, tool: str | None = None) -> None:
        super().__init__(message)
        self.tool = tool
        """The tool the call named, or None when the call failed before a valid name was read."""

    def __reduce__(self):
        # Keep ``tool`` across pickling (multiprocessing data loaders, Ray workers).
        return (type(self), (str(self),), {"tool": self.tool})
