"""Load any image file as an RGB ``uint8 [3, H, W]`` tensor (``uint16`` for 16-bit files on request), or fail with
a typed error saying what is wrong.

Conversions (each one documented because it changes pixels):
- EXIF orientation is applied (a phone photo stored sideways is assessed upright).
- L / 1 / YCbCr / LAB / HSV / CMYK → RGB through Pillow's converters (CMYK is the naive ``255 - (c + k)`` form;
  Pillow already undoes Adobe's inverted CMYK JPEGs).
- Alpha (LA, RGBA, PA, P with a transparent colour) is composited on **white**: that is what a viewer shows, and a
  transparent background would otherwise turn into arbitrary colours.
- 16-bit (``I;16*``, ``I``) grayscale is rescaled by 255/65535 (Pillow's own ``convert("L")`` clips at 255, turning most
  16-bit images white), or kept at 16 bits as a uint16 tensor with ``load_image(keep_depth=True)``; 32-bit float
  (``F``) in [0, 1] is scaled by 255, otherwise clipped.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

MIN_SIDE = 32
"""Images with a side shorter than this are rejected (too small to say anything about quality)."""
MAX_PIXELS = 89_478_485
"""Pixel-count limit (Pillow's own default): a larger declared size is treated as a decompression bomb."""


class ImageError(ValueError):
    """An image that cannot be assessed. ``kind`` is a short tag for the error row (``"corrupt"``, ``"too_small"``, ...)."""

    kind = "image_error"

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class ImageNotFoundError(ImageError):
    kind = "missing_image"


class UnreadableImageError(ImageError):
    """The file is there but this process may not read it (permissions): retried on resume."""

    kind = "unreadable"


class NotAFileError(ImageError):
    """A folder, FIFO, device or socket stands where the image should be (never opened: a FIFO would block)."""

    kind = "not_a_file"


class CorruptImageError(ImageError):
    kind = "corrupt"


class ImageTooSmallError(ImageError):
    kind = "too_small"


class DecompressionBombError(ImageError):
    kind = "decompression_bomb"


_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
"""Pillow's 16-bit (and 32-bit integer) grayscale modes."""


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in _SIXTEEN_BIT:
        values = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(np.rint(values * (255.0 / 65535.0)), 0, 255).astype(np.uint8), "L")
    elif mode == "F":
        values = np.asarray(image, dtype=np.float64)
        scale = 255.0 if values.size and np.nanmax(values) <= 1.0 else 1.0
        image = Image.fromarray(np.clip(np.nan_to_num(values * scale), 0, 255).astype(np.uint8), "L")
    elif mode in ("LA", "La", "PA", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")


def _check_file(path: Path) -> None:
    """A regular, readable file stands at ``path`` (links followed), or the precise :class:`ImageError`."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ImageNotFoundError(path, "image file not found") from None
    except PermissionError as exc:
        raise UnreadableImageError(path, f"cannot be reached ({exc.strerror}); fix the folder's permissions") from None
    except OSError as exc:  # a name too long, a loop of links, ...
        raise ImageNotFoundError(path, f"image file not found ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        what = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
        raise NotAFileError(path, f"is {what}, not an image file")
    if not os.access(path, os.R_OK):
        raise UnreadableImageError(path, "cannot be read (permission denied); fix its permissions")


def load_pil(
    path: str | Path, *, min_side: int = MIN_SIDE, max_pixels: int = MAX_PIXELS, max_side: int | None = None
) -> Image.Image:
    """Open, validate and convert an image to an upright RGB :class:`PIL.Image.Image` (see the module docstring).

    Args:
        path: image file.
        min_side: reject images whose shorter side is below this (after EXIF rotation).
        max_pixels: reject images declaring more pixels than this, before decoding anything.
        max_side: if set, downscale (bicubic, aspect kept) so the longer side is at most this.

    Raises:
        ImageNotFoundError, UnreadableImageError (permissions), NotAFileError (a folder, FIFO, device),
        CorruptImageError (truncated, garbage), ImageTooSmallError, DecompressionBombError.
    """
    return _fit(_to_rgb(_open_upright(Path(path), min_side, max_pixels)), max_side)


def _open_upright(path: Path, min_side: int, max_pixels: int) -> Image.Image:
    """The decoded, EXIF-rotated image in its own mode, or the precise :class:`ImageError`."""
    _check_file(path)
    # No warnings.catch_warnings here: it is not thread-safe and the runner decodes in threads. The explicit size
    # check below rejects a bomb before decoding; Pillow's own error (at twice its limit) is mapped too.
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise DecompressionBombError(
                    path, f"declares {width}x{height} = {width * height:,} pixels, over the {max_pixels:,} limit"
                )
            image.load()
            image = ImageOps.exif_transpose(image)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise DecompressionBombError(path, f"decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise CorruptImageError(path, "not a recognised image format (corrupt or not an image)") from None
    except PermissionError as exc:
        raise UnreadableImageError(path, f"cannot be read ({exc.strerror}); fix its permissions") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImageError(path, f"truncated or corrupt image data ({exc})") from None
    if min(image.size) < min_side:
        raise ImageTooSmallError(path, f"{image.size[0]}x{image.size[1]} is under the {min_side} px minimum side")
    return image


def _fit(image: Image.Image, max_side: int | None) -> Image.Image:
    """Downscale (bicubic, aspect kept) so the longer side is at most ``max_side``; no-op when None or inside."""
    if max_side is None or max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    size = (max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale)))
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)


def check_image_header(
    path: str | Path, *, min_side: int = MIN_SIDE, max_pixels: int = MAX_PIXELS
) -> ImageError | None:
    """What :func:`load_pil` would refuse that the file's header already shows (missing, unreadable, not a file,
    not an image, too small, a bomb), without decoding pixels (~0.1 ms a file); None when the header is fine.

    A training run checks every image this way at set-up, so a bad file stops it at step 0, not at step 5,000. Cut
    pixel data shows only on decoding (``load_image``)."""
    path = Path(path)
    try:
        _check_file(path)
        with Image.open(path) as image:
            width, height = image.size
    except ImageError as err:
        return err
    except UnidentifiedImageError:
        return CorruptImageError(path, "not a recognised image format (corrupt or not an image)")
    except PermissionError as exc:
        return UnreadableImageError(path, f"cannot be read ({exc.strerror}); fix its permissions")
    except Image.DecompressionBombError as exc:
        return DecompressionBombError(path, f"decompression bomb ({exc})")
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        return CorruptImageError(path, f"unreadable image header ({exc})")
    if width * height > max_pixels:
        return DecompressionBombError(path, f"declares {width}x{height} = {width * height:,} pixels, over the limit")
    if min(width, height) < min_side:
        return ImageTooSmallError(path, f"{width}x{height} is under the {min_side} px minimum side")
    return None


def load_image(
    path: str | Path,
    *,
    min_side: int = MIN_SIDE,
    max_pixels: int = MAX_PIXELS,
    max_side: int | None = None,
    keep_depth: bool = False,
) -> torch.Tensor:
    """Load an image file as an upright RGB tensor ``[3, H, W]`` (arguments and errors: :func:`load_pil`).

    uint8, except with ``keep_depth`` for a 16-bit grayscale file (``I;16*``, ``I``): then uint16 with all its
    levels (gray repeated to 3 channels), so the Gamma Corrector can lift shadow detail an 8-bit copy rounds away
    (the model's own views are 8-bit either way). Pillow decodes 16-bit RGB PNGs to 8 bits itself: those stay uint8.
    """
    image = _open_upright(Path(path), min_side, max_pixels)
    if keep_depth and image.mode in _SIXTEEN_BIT:
        return _deep_tensor(image, max_side)
    image = _fit(_to_rgb(image), max_side)
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def _deep_tensor(image: Image.Image, max_side: int | None) -> torch.Tensor:
    """A 16-bit grayscale image as uint16 ``[3, H, W]``, downscaled in float (Pillow's ``F`` mode) if asked."""
    values = np.asarray(image, dtype=np.float32)
    if max_side is not None and max(image.size) > max_side:
        values = np.asarray(_fit(Image.fromarray(values, "F"), max_side), dtype=np.float32)
    gray = torch.from_numpy(np.clip(np.rint(values), 0, 65535).astype(np.uint16))
    return gray.unsqueeze(0).expand(3, -1, -1).contiguous()


def to_pil(image: torch.Tensor) -> Image.Image:
    """A ``uint8 [3, H, W]`` tensor (any device) as a PIL RGB image."""
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a uint8 [3, H, W] tensor, got {image.dtype} {list(image.shape)}")
    return Image.fromarray(image.detach().cpu().permute(1, 2, 0).numpy(), "RGB")


def encode_png(image: torch.Tensor | Image.Image) -> bytes:
    """PNG bytes of a ``uint8 [3, H, W]`` tensor or a PIL image (for :class:`~tooliqa_data.AssessedTurn` views)."""
    pil = image if isinstance(image, Image.Image) else to_pil(image)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return buffer.getvalue()
