"""Whole-file writes: readers (and a killed writer) see the old file or the new one, never half of either."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["replace_atomically"]


def replace_atomically(path: Path, write: Callable[[IO[Any]], object], binary: bool = False) -> None:
    """Write ``path`` through ``write(handle)`` on a temporary file beside it, then ``os.replace``.

    The temporary file is this process's and thread's own, so two writers of the same file at once (a resumed
    evaluation and its journal repair, ablations generating the same set side by side) never write into each other.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with tmp.open("wb" if binary else "w", **({} if binary else {"newline": "", "encoding": "utf-8"})) as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
