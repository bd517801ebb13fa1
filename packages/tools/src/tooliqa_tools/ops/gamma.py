"""The Gamma Corrector op: I_out = I_in^γ on [0, 1] (SPEC §3), exact 256-entry LUT on uint8, ``pow`` on float; uint16
originals go through the exact 16-bit → 8-bit table of :mod:`tooliqa_tools.ops.depth`."""

from __future__ import annotations

import math
import numbers
from collections import defaultdict
from collections.abc import Sequence
from functools import lru_cache

import torch

from tooliqa_tools.errors import ToolError
from tooliqa_tools.ops import triton_lut
from tooliqa_tools.ops.depth import gamma_correct16

GAMMA_CORRECTOR = "gamma_corrector"


def _fail(reason: str) -> ToolError:
    return ToolError(f"{GAMMA_CORRECTOR}: {reason}", tool=GAMMA_CORRECTOR)


def check_gamma(gamma: object) -> float:
    """A positive finite γ as a float; anything else raises ``ToolError``."""
    if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real):
        raise _fail(f"gamma must be a number, got {gamma!r:.40}")
    try:
        value = float(gamma)
    except OverflowError:  # an int too large for a float
        value = math.inf
    if not (math.isfinite(value) and value > 0):
        raise _fail(f"gamma must be a positive finite number, got {gamma!r:.40}")
    return value


@lru_cache(maxsize=512)
def _lut_bytes(gamma: float) -> bytes:
    # Python float64 ``**`` and round-half-even, i.e. numpy's ``np.round(255 * (i / 255) ** γ)``.
    return bytes(round(255 * (i / 255) ** gamma) for i in range(256))


def gamma_table(gamma: float) -> torch.Tensor:
    """The exact uint8 LUT ``round(255 · (i / 255)^γ)``, i = 0…255, as a fresh uint8 ``[256]`` tensor."""
    return torch.frombuffer(bytearray(_lut_bytes(check_gamma(gamma))), dtype=torch.uint8)


def _storage_order(image: torch.Tensor) -> torch.Tensor:
    """A contiguous permuted view walking ``image``'s memory in storage order (dense input assumed)."""
    order = sorted(range(image.dim()), key=lambda dim: -image.stride(dim))
    return image.permute(order)


def _translate_cpu(image: torch.Tensor, table: bytes, out: torch.Tensor) -> None:
    # CPython's bytes.translate is a C byte-LUT loop: exact, and ~6× faster here than torch's int64 gather
    # (``lut[x.long()]`` widens every byte to 8), on par with PIL's Image.point.
    source = _storage_order(image).numpy()
    target = _storage_order(out).numpy()
    memoryview(target).cast("B")[:] = memoryview(source).cast("B").tobytes().translate(table)


def _dense(image: torch.Tensor) -> bool:
    return _storage_order(image).is_contiguous()


def _gamma_list(gammas: object, count: int) -> list[float]:
    values = gammas.tolist() if hasattr(gammas, "tolist") else gammas  # tensors / arrays, 0-d included
    if isinstance(values, numbers.Real) and not isinstance(values, bool):
        return [check_gamma(values)] * count
    if isinstance(values, str | bytes) or not isinstance(values, Sequence) or len(values) != count:
        raise _fail(f"need one gamma per image ({count}), got {gammas!r:.40}")
    return [check_gamma(value) for value in values]


@lru_cache(maxsize=256)
def _device_table(gamma: float, device: torch.device) -> torch.Tensor:
    # Cached per device: a batch then costs one on-device stack instead of B host tables and a blocking upload.
    return gamma_table(gamma).to(device)


def gather_luts(batch: torch.Tensor, gammas: Sequence[float]) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` through per-image LUTs on an accelerator: the Triton kernel on CUDA, else one torch
    gather (any device; widens indices to int64, so ~17× the traffic)."""
    tables = torch.stack([_device_table(value, batch.device) for value in gammas])
    if batch.is_cuda and triton_lut.available():
        return triton_lut.apply_luts(batch, tables)
    offsets = torch.arange(0, 256 * len(gammas), 256, device=batch.device).view(-1, 1, 1, 1)
    return torch.take(tables, batch.long() + offsets)


def gamma_correct(images: torch.Tensor, gammas: object) -> torch.Tensor:
    """Apply I_out = I_in^γ per image.

    Args:
        images: ``[3, H, W]`` or ``[B, 3, H, W]``; uint8 (exact LUT ``round(255 · (x/255)^γ)``), uint16 (exact LUT
            ``round(255 · (x/65535)^γ)``, an 8-bit result) or floating in [0, 1] (``clamp(x, 0, 1) ** γ``); any device.
        gammas: one γ for all images, or ``[B]`` (tensor or sequence); each positive and finite.
    Returns:
        Same shape and device as ``images``; same dtype, except uint8 for uint16 input (the views are 8-bit).
    """
    if not isinstance(images, torch.Tensor) or images.dim() not in (3, 4) or images.shape[-3] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"gamma_correct expects [3, H, W] or [B, 3, H, W] images, got {shape}")
    batch = images if images.dim() == 4 else images.unsqueeze(0)
    values = _gamma_list(gammas, batch.shape[0])
    if images.is_floating_point():
        base = batch.clamp(0, 1)
        if len(set(values)) == 1:  # a scalar exponent takes torch's sqrt / square fast paths for 0.5 / 2
            out = base.pow_(values[0])
        else:
            out = base.pow_(torch.tensor(values, dtype=batch.dtype, device=batch.device).view(-1, 1, 1, 1))
        return out[0] if images.dim() == 3 else out
    if images.dtype == torch.uint16:
        out = torch.stack([gamma_correct16(image, value) for image, value in zip(batch, values)])
        return out[0] if images.dim() == 3 else out
    if images.dtype != torch.uint8:
        raise ValueError(f"gamma_correct expects uint8, uint16 or floating images, got {images.dtype}")
    if batch.device.type == "cpu" and batch.shape[0] == 1:  # one image: its translated buffer is the result
        single = _translate_one(batch[0], _lut_bytes(values[0]))
        return single if images.dim() == 3 else single.unsqueeze(0)
    if batch.device.type == "cpu":
        # Per-image byte runs must line up between input and output: a dense batch of dense images keeps its
        # strides through empty_like (preserve_format); anything else is made contiguous first.
        source = batch if _dense(batch) and _dense(batch[0]) else batch.contiguous()
        out = torch.empty_like(source)
        for index, value in enumerate(values):
            _translate_cpu(source[index], _lut_bytes(value), out[index])
    else:
        out = gather_luts(batch, values)
    return out[0] if images.dim() == 3 else out


def _translate_one(image: torch.Tensor, table: bytes) -> torch.Tensor:
    """One CPU uint8 image through the LUT into a fresh tensor with the same layout.

    ``bytearray(...).translate`` leaves the result in a heap buffer that torch adopts without a copy; allocator-
    recycled per-image buffers avoid the page faults a fresh batch-sized output takes (faster than PIL's point).
    """
    source = image if _dense(image) else image.contiguous()
    translated = bytearray(memoryview(_storage_order(source).numpy()).cast("B")).translate(table)
    return torch.frombuffer(translated, dtype=torch.uint8).as_strided(source.shape, source.stride())


def gamma_correct_many(images: Sequence[torch.Tensor], gammas: Sequence[float]) -> list[torch.Tensor]:
    """``gamma_correct`` over ``[3, H_i, W_i]`` images of any sizes (one batched call per shape on accelerators)."""
    views: list[torch.Tensor | None] = [None] * len(images)
    groups: dict[tuple, list[int]] = defaultdict(list)
    for index, image in enumerate(images):
        if image.device.type == "cpu" and image.dtype == torch.uint8:
            views[index] = _translate_one(image, _lut_bytes(check_gamma(gammas[index])))
        elif image.dtype == torch.uint16:
            views[index] = gamma_correct16(image, check_gamma(gammas[index]))
        else:
            groups[(tuple(image.shape), image.dtype, image.device)].append(index)
    for indices in groups.values():
        batch = torch.stack([images[i] for i in indices])
        for index, view in zip(indices, gamma_correct(batch, [gammas[i] for i in indices]).unbind(0)):
            views[index] = view
    return views
