"""The error a command-line user fixes themselves: the apps print its one-line message, no traceback."""

from __future__ import annotations

__all__ = ["UsageError"]


class UsageError(Exception):
    """A mistake in the command or its folders; the message names the flag, file or key and what to do."""
