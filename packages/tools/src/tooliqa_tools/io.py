"""PIL / numpy in-and-out helpers for callers that hold images in those forms (the ops themselves never use PIL)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def image_to_tensor(image: Image.Image | np.ndarray | torch.Tensor) -> torch.Tensor:
    """A PIL image, an ``[H, W]`` / ``[H, W, 3|4]`` uint8 array or a ``[3, H, W]`` tensor → uint8 ``[3, H, W]``.

    PIL images of any mode are converted to RGB; gray arrays are repeated to 3 channels; an alpha channel is dropped.
    """
    if isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
            raise ValueError(f"expected a uint8 [3, H, W] tensor, got {image.dtype} {tuple(image.shape)}")
        return image
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(f"expected a PIL image or a uint8 array, got {type(image).__name__}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected an [H, W], [H, W, 3] or [H, W, 4] array, got shape {image.shape}")
    return torch.from_numpy(image[:, :, :3].transpose(2, 0, 1).copy())  # one copy into CHW, writable


def tensor_to_numpy(image: torch.Tensor) -> np.ndarray:
    """uint8 ``[3, H, W]`` (any device) → uint8 ``[H, W, 3]`` array."""
    if image.dim() != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
        raise ValueError(f"expected a uint8 [3, H, W] tensor, got {image.dtype} {tuple(image.shape)}")
    return np.ascontiguousarray(image.detach().cpu().permute(1, 2, 0).numpy())


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """uint8 ``[3, H, W]`` (any device) → RGB PIL image."""
    return Image.fromarray(tensor_to_numpy(image))
