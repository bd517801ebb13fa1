"""The Magnifier op: crop each image's box from the original and upscale it (SPEC §3), batched by view shape."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch

from tooliqa_tools.config import DEFAULT_MAGNIFIER, MagnifierConfig
from tooliqa_tools.errors import ToolError
from tooliqa_tools.ops.geometry import MAGNIFIER, CropPlan, plan_crop
from tooliqa_tools.ops.resize import resize


def image_list(images: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``[3, H, W]`` / ``[B, 3, H, W]`` / a sequence of ``[3, H, W]`` → a list of ``[3, H, W]`` (views, no copy)."""
    items = [images] if isinstance(images, torch.Tensor) and images.dim() == 3 else list(images)
    for index, item in enumerate(items):
        if not isinstance(item, torch.Tensor) or item.dim() != 3 or item.shape[0] != 3:
            shape = tuple(item.shape) if isinstance(item, torch.Tensor) else type(item).__name__
            raise ValueError(f"image {index}: expected a [3, H, W] tensor, got {shape}")
        if not (item.dtype == torch.uint8 or item.is_floating_point()):
            raise ValueError(f"image {index}: expected uint8 or floating pixels, got {item.dtype}")
    return items


def _box_list(boxes: object, count: int, single: bool) -> list[object]:
    if single:
        return [boxes]
    rows = boxes.tolist() if hasattr(boxes, "tolist") else boxes
    if isinstance(rows, str | bytes) or not isinstance(rows, Sequence):
        raise ToolError(
            f"{MAGNIFIER}: boxes must be a list of {count} boxes, got {type(rows).__name__}", tool=MAGNIFIER
        )
    if len(rows) != count:
        raise ToolError(f"{MAGNIFIER}: need one box per image ({count}), got {len(rows)}", tool=MAGNIFIER)
    return list(rows)


def render_crops(originals: Sequence[torch.Tensor], plans: Sequence[CropPlan]) -> list[torch.Tensor]:
    """Execute planned crops: ``originals[i]`` ``[3, H_i, W_i]`` cropped at ``plans[i].box``, resized to its size.

    On accelerators, calls with the same crop size, view size and dtype share one resize call (one kernel chain).
    On CPU each view is resized alone: the kernel is per-image anyway, and small per-image buffers are recycled by
    the allocator while a batch-sized buffer page-faults afresh on every call (measured ~10 % slower).

    Returns ``[3, h_i, w_i]`` views in input order, same dtype and device as each original. CPU uint8 views keep the
    channels-last memory layout of torch's fast kernel (strides ``(1, 3·w, 3)``): converting to CHW memory would cost
    more than a third of the resize; call ``.contiguous()`` where CHW memory is needed.
    """
    groups: dict[tuple, list[int]] = defaultdict(list)
    for index, (image, plan) in enumerate(zip(originals, plans, strict=True)):
        batch_key = index if image.device.type == "cpu" else None
        groups[(batch_key, plan.crop_size, plan.size, image.dtype, image.device)].append(index)
    views: list[torch.Tensor | None] = [None] * len(plans)
    for (_, _, size, _, _), indices in groups.items():
        crops = []
        for index in indices:
            x1, y1, x2, y2 = plans[index].box
            crops.append(originals[index][:, y1:y2, x1:x2])
        for index, view in zip(indices, resize(crops, size).unbind(0)):
            views[index] = view
    return views


def magnify(
    images: torch.Tensor | Sequence[torch.Tensor],
    boxes: object,
    config: MagnifierConfig = DEFAULT_MAGNIFIER,
) -> list[torch.Tensor]:
    """Magnify one box per image.

    Args:
        images: ``[3, H, W]``, ``[B, 3, H, W]`` or a sequence of ``[3, H_i, W_i]``; uint8 or float (0–1); any device.
        boxes: for ``[3, H, W]`` one box (4 numbers, a list or a ``[4]`` tensor); else ``[B, 4]`` or B boxes,
            in ``config.coords``.
        config: coordinate system, minimum side, aspect limit, zoom cap, pixel budget, side multiple.
    Returns:
        B views ``[3, h_i, w_i]`` (sides multiples of ``config.multiple``), same dtype and device as the input.
    Raises:
        ToolError: a bad box (naming which one when there are several); ValueError: images of a wrong shape/dtype.
    """
    items = image_list(images)
    single = isinstance(images, torch.Tensor) and images.dim() == 3
    plans = []
    for index, (image, box) in enumerate(zip(items, _box_list(boxes, len(items), single))):
        try:
            plans.append(plan_crop(box, image.shape[-2], image.shape[-1], config))
        except ToolError as error:
            if single:
                raise
            raise ToolError(f"{error} (image {index})", tool=MAGNIFIER) from None
    return render_crops(items, plans)
