"""The one error type of the package and the shape/dtype checks every public reward runs on its inputs."""

from __future__ import annotations

import torch


class RewardInputError(ValueError):
    """A reward got an input of the wrong shape, dtype, device or value; the message names the function and field."""


_KINDS = {
    "float": lambda t: t.is_floating_point(),
    "bool": lambda t: t.dtype == torch.bool,
    "int": lambda t: not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool,
}


def expect_tensor(where: str, field: str, value: object, shape: tuple[int, ...], kind: str) -> None:
    """Raise `RewardInputError` unless ``value`` is a tensor of exactly ``shape`` whose dtype is of ``kind``."""
    if not isinstance(value, torch.Tensor):
        raise RewardInputError(f"{where}: {field} must be a torch.Tensor, got {type(value).__name__}")
    if tuple(value.shape) != shape:
        raise RewardInputError(f"{where}: {field} must have shape {list(shape)}, got {list(value.shape)}")
    if not _KINDS[kind](value):
        raise RewardInputError(f"{where}: {field} must be a {kind} tensor, got {value.dtype}")


def expect_batch(where: str, scores: object, **fields: tuple[object, str, bool]) -> tuple[int, int]:
    """Check ``scores`` is a float ``[B, G]`` tensor and each of ``fields`` (name → (tensor, kind, per_image)) is
    ``[B]`` (per image) or ``[B, G]`` on the same device; returns (B, G)."""
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2:
        shape = list(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise RewardInputError(f"{where}: the [B, G] scores tensor must be 2-D, got {shape}")
    if not scores.is_floating_point():
        raise RewardInputError(f"{where}: scores must be a float tensor, got {scores.dtype}")
    b, g = scores.shape
    if b == 0 or g == 0:
        raise RewardInputError(f"{where}: the batch is empty (B={b}, G={g})")
    for name, (value, kind, per_image) in fields.items():
        expect_tensor(where, name, value, (b,) if per_image else (b, g), kind)
        if value.device != scores.device:
            raise RewardInputError(f"{where}: {name} is on {value.device} but the scores are on {scores.device}")
    return b, g


def float_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype rewards are computed in: the input's float dtype, at least float32."""
    return torch.promote_types(t.dtype, torch.float32) if t.is_floating_point() else torch.float32
