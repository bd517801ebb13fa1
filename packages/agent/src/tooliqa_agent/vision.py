"""Image geometry shared by the rollout, the engines and ``collate``: pre-sizing and placeholder counts.

Every image the model sees (original and tool views) is pre-sized to multiples of 32 (patch 16 × merge 2) inside the
processor's pixel bounds, so the transformers and vLLM resizers are both no-ops and agree on each image's grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

from tooliqa_tools import resize


def pixel_bounds(processor) -> tuple[int, int]:
    """(min_pixels, max_pixels) of the processor's image processor."""
    image_processor = processor.image_processor
    size = getattr(image_processor, "size", None) or {}
    if "shortest_edge" in size and "longest_edge" in size:
        return int(size["shortest_edge"]), int(size["longest_edge"])
    return int(image_processor.min_pixels), int(image_processor.max_pixels)


def _geometry(processor) -> tuple[int, int]:
    """(patch_size, merge_size) of the image processor."""
    image_processor = processor.image_processor
    return int(image_processor.patch_size), int(image_processor.merge_size)


def presized_shape(height: int, width: int, processor) -> tuple[int, int]:
    """The (height, width) the processor would resize an image to: multiples of 32 inside the pixel bounds."""
    patch, merge = _geometry(processor)
    low, high = pixel_bounds(processor)
    return smart_resize(height, width, factor=patch * merge, min_pixels=low, max_pixels=high)


def _check_image(image: torch.Tensor, what: str) -> None:
    if not isinstance(image, torch.Tensor) or image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        got = f"{image.dtype} {tuple(image.shape)}" if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"{what}: expected a uint8 tensor [3, H, W], got {got}")


def prepare_image(image: torch.Tensor, processor) -> torch.Tensor:
    """Resize a uint8 [3, H, W] image to the processor's pre-sized shape (bicubic, antialiased); no-op when it fits."""
    _check_image(image, "prepare_image")
    height, width = presized_shape(int(image.shape[1]), int(image.shape[2]), processor)
    if (height, width) == tuple(image.shape[1:]):
        return image
    # tooliqa_tools' resize takes torch's uint8 AVX2 kernel on CPU (a float bicubic is ~8× slower than PIL there)
    return resize([image], (height, width))[0].contiguous()


def image_grid(image: torch.Tensor, processor) -> tuple[int, int, int]:
    """(grid_t, grid_h, grid_w) in patches for a pre-sized image; a clear error for one that is not pre-sized."""
    _check_image(image, "image_grid")
    height, width = int(image.shape[1]), int(image.shape[2])
    if presized_shape(height, width, processor) != (height, width):
        raise ValueError(
            f"image {height}x{width} is not pre-sized (multiples of 32 inside the processor's pixel bounds "
            f"{pixel_bounds(processor)}): pass it through Agent.prepare_image first"
        )
    patch, _ = _geometry(processor)
    return 1, height // patch, width // patch


def image_token_count(image: torch.Tensor, processor) -> int:
    """Number of ``<|image_pad|>`` tokens a pre-sized image expands to: grid_t * grid_h * grid_w / merge²."""
    t, h, w = image_grid(image, processor)
    return t * h * w // _geometry(processor)[1] ** 2


def image_inputs(
    images: Sequence[torch.Tensor], processor, dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Model inputs of pre-sized images, in order: (pixel_values [Σ patches, 3·2·16²], image_grid_thw long [n, 3]).

    Runs on the images' device; the resize inside the processor is a no-op because the images are pre-sized.
    """
    expected = torch.tensor([image_grid(image, processor) for image in images], dtype=torch.long).reshape(-1, 3)
    if not images:
        return torch.zeros(0, 3 * 2 * 16 * 16, dtype=dtype or torch.float32), expected
    out = processor.image_processor(images=list(images), return_tensors="pt")
    grid = out["image_grid_thw"].to(torch.long).cpu()
    if not torch.equal(grid, expected):
        raise RuntimeError(f"image processor grid {grid.tolist()} differs from the pre-sized grid {expected.tolist()}")
    pixel_values = out["pixel_values"]
    return (pixel_values.to(dtype) if dtype is not None else pixel_values), grid
