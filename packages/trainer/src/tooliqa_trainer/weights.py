"""Checkpoint files checked before and after loading: structure, fingerprint, finiteness.

- :func:`check_checkpoint` reads each ``*.safetensors`` header (a few KB) and refuses a 0-byte, cut or garbled
  file naming it, before transformers turns it into a bare ``EOFError`` or a crash deep inside loading.
- :func:`fingerprint` hashes every tensor's bytes (streamed, threads over tensors: hashlib releases the GIL), so an
  evaluation folder records which weights it scored and refuses to resume over others, naming the tensors that
  differ. SHA-256 here is a change detector, not a security boundary.
- :func:`check_finite` refuses a loaded model holding NaN or inf (flipped bytes, a diverged run) naming the file and
  tensor, instead of "probability tensor contains nan" at the first sampling step.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

__all__ = ["CheckpointError", "check_checkpoint", "check_finite", "fingerprint", "weight_files"]

_CHUNK = 16 << 20


class CheckpointError(ValueError):
    """A checkpoint file that cannot be what it claims (empty, cut, garbled, non-finite)."""


def weight_files(ckpt: str | os.PathLike) -> list[Path]:
    """The ``*.safetensors`` files of a checkpoint directory, sorted (empty for a hub id or a missing folder)."""
    folder = Path(ckpt)
    return sorted(folder.glob("*.safetensors")) if folder.is_dir() else []


def _header(path: Path) -> tuple[int, dict]:
    """``(data start, header)`` of a safetensors file, or a :class:`CheckpointError` saying what is wrong."""
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: 0 bytes (an empty or interrupted copy); copy or export the checkpoint again")
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: {size} bytes, too short for a safetensors header (a cut copy)")
        (length,) = struct.unpack("<Q", head)
        if 8 + length > size:
            raise CheckpointError(f"{path}: cut short ({size:,} bytes, its header alone claims {8 + length:,})")
        try:
            header = json.loads(handle.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CheckpointError(
                f"{path}: the safetensors header is not JSON (not a safetensors file, or damaged)"
            ) from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the safetensors header is not a table of tensors")
    header.pop("__metadata__", None)
    end = max((int(entry["data_offsets"][1]) for entry in header.values()), default=0)
    if 8 + length + end > size:
        raise CheckpointError(f"{path}: cut short ({size:,} bytes, its tensors need {8 + length + end:,})")
    return 8 + length, header


def check_checkpoint(ckpt: str | os.PathLike) -> list[Path]:
    """Validate every safetensors header of a checkpoint directory (cheap: headers only); returns the files."""
    files = weight_files(ckpt)
    for path in files:
        _header(path)
    return files


def _digest(path: Path, start: int, stop: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        handle.seek(start)
        left = stop - start
        while left > 0:
            block = handle.read(min(_CHUNK, left))
            if not block:
                raise CheckpointError(f"{path}: cut short while reading its tensors")
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()[:16]


def fingerprint(ckpt: str | os.PathLike, workers: int | None = None) -> dict[str, str]:
    """``tensor name → digest of its bytes`` over every safetensors file of ``ckpt`` (``{}`` if it has none)."""
    jobs = []
    for path in check_checkpoint(ckpt):
        base, header = _header(path)
        for name, entry in header.items():
            begin, end = (int(x) for x in entry["data_offsets"])
            jobs.append((name, path, base + begin, base + end))
    with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
        digests = pool.map(lambda job: _digest(*job[1:]), jobs)
        return dict(sorted(zip((job[0] for job in jobs), digests)))


def _non_finite(files: list[Path]) -> tuple[Path, str] | None:
    from safetensors import safe_open

    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                tensor = handle.get_tensor(name)
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                    return path, name
    return None


def check_finite(model: torch.nn.Module, ckpt: str | os.PathLike) -> None:
    """Raise a :class:`CheckpointError` naming the file and tensor when a loaded parameter or buffer is NaN/inf."""
    tensors = [*model.named_parameters(), *model.named_buffers()]
    bad = next((name for name, t in tensors if t.is_floating_point() and not bool(torch.isfinite(t).all())), None)
    if bad is None:
        return
    found = _non_finite(weight_files(ckpt))  # only on failure: re-read the files to name the one at fault
    where = f"{found[0]}: tensor {found[1]!r}" if found else f"{ckpt}: parameter {bad!r}"
    raise CheckpointError(
        f"{where} holds NaN or inf values (flipped bytes or a diverged run); re-export or copy the checkpoint again"
    )
