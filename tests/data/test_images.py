"""load_image on the bad-input corpus: every file is generated here, each case checked against hand-made pixels."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from tooliqa_data import (
    CorruptImageError,
    DecompressionBombError,
    ImageNotFoundError,
    ImageTooSmallError,
    encode_png,
    load_image,
)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 40_000, height: int = 40_000) -> bytes:
    """A tiny PNG whose header declares a huge size (the pixel data is a few bytes)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, **kwargs)
    return buffer.getvalue()


def bad_corpus(folder) -> dict[str, type[Exception]]:
    """Write every bad file; returns name → the error it must raise."""
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8), "RGB")
    data = jpeg_bytes(rgb)
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "garbage.png").write_bytes(b"this is not an image at all" * 10)
    (folder / "empty.jpg").write_bytes(b"")
    Image.new("RGB", (20, 20), (10, 20, 30)).save(folder / "tiny_20px.png")
    (folder / "bomb.png").write_bytes(bomb_png())
    return {
        "truncated.jpg": CorruptImageError,
        "garbage.png": CorruptImageError,
        "empty.jpg": CorruptImageError,
        "tiny_20px.png": ImageTooSmallError,
        "bomb.png": DecompressionBombError,
    }


def good_odd_corpus(folder) -> dict[str, np.ndarray]:
    """Write the convertible odd files; returns name → the expected RGB pixel at (row 0, column 0)."""
    Image.new("L", (40, 36), 77).save(folder / "gray_L.png")
    Image.new("LA", (40, 36), (200, 0)).save(folder / "gray_alpha_LA.png")  # fully transparent → white
    rgba = Image.new("RGBA", (40, 36), (255, 0, 0, 128))  # half-transparent red on white → (255, 127, 127)
    rgba.save(folder / "rgba.png")
    palette = Image.new("P", (40, 36), 1)
    palette.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    palette.save(folder / "palette_P.png")
    Image.new("CMYK", (40, 36), (0, 255, 255, 0)).save(folder / "cmyk.jpg", quality=100)  # pure red
    Image.fromarray(np.full((36, 40), 32896, dtype=np.uint16)).save(folder / "deep_16bit.png")  # 32896/257 = 128
    return {
        "gray_L.png": np.array([77, 77, 77]),
        "gray_alpha_LA.png": np.array([255, 255, 255]),
        "rgba.png": np.array([255, 127, 127]),
        "palette_P.png": np.array([0, 200, 0]),
        "cmyk.jpg": np.array([255, 0, 0]),
        "deep_16bit.png": np.array([128, 128, 128]),
    }


def test_bad_files_raise_typed_errors_naming_the_file(tmp_path):
    for name, error in bad_corpus(tmp_path).items():
        with pytest.raises(error) as info:
            load_image(tmp_path / name)
        assert name in str(info.value), name
    with pytest.raises(ImageNotFoundError, match="not found"):
        load_image(tmp_path / "absent.png")


def test_odd_modes_convert_to_rgb(tmp_path):
    for name, pixel in good_odd_corpus(tmp_path).items():
        image = load_image(tmp_path / name)
        assert image.dtype == torch.uint8 and tuple(image.shape) == (3, 36, 40), name
        np.testing.assert_allclose(image[:, 0, 0].numpy(), pixel, atol=2, err_msg=name)


def test_16bit_is_rescaled_not_clipped(tmp_path):
    ramp = np.tile(np.array([0, 257, 65535, 12850], dtype=np.uint16), (33, 9))  # 36 columns
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    assert load_image(tmp_path / "ramp.png")[0, 0, :4].tolist() == [0, 1, 255, 50]


def test_16bit_keeps_all_its_levels_on_request(tmp_path):
    ramp = np.tile(np.array([0, 257, 300, 65535], dtype=np.uint16), (40, 9))  # 36 columns, 257 and 300 both 8-bit 1
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    deep = load_image(tmp_path / "ramp.png", keep_depth=True)
    assert deep.dtype == torch.uint16 and tuple(deep.shape) == (3, 40, 36)
    assert deep[:, 0, :4].tolist() == [[0, 257, 300, 65535]] * 3
    assert load_image(tmp_path / "ramp.png", keep_depth=True, max_side=18).shape == (3, 18, 16)
    Image.new("RGB", (40, 40), (9, 8, 7)).save(tmp_path / "rgb.png")  # 8-bit files stay uint8
    assert load_image(tmp_path / "rgb.png", keep_depth=True).dtype == torch.uint8


def test_exif_rotation_is_applied(tmp_path):
    pixels = np.zeros((40, 64, 3), dtype=np.uint8)
    pixels[:, :32] = (255, 0, 0)  # left half red, right half blue (stored 64 wide, 40 tall)
    pixels[:, 32:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    (tmp_path / "rotated.jpg").write_bytes(jpeg_bytes(Image.fromarray(pixels), exif=exif.tobytes()))
    image = load_image(tmp_path / "rotated.jpg")
    assert tuple(image.shape) == (3, 64, 40)  # upright: 40 wide, 64 tall
    assert image[0, 5, 20] > 200 and image[2, 5, 20] < 60  # stored left (red) is now the top
    assert image[2, 60, 20] > 200  # stored right (blue) is now the bottom


def test_limits_and_max_side(tmp_path):
    Image.new("RGB", (300, 150), (1, 2, 3)).save(tmp_path / "wide.png")
    assert tuple(load_image(tmp_path / "wide.png", max_side=100).shape) == (3, 50, 100)
    with pytest.raises(DecompressionBombError, match="45,000 pixels, over the 40,000 limit"):
        load_image(tmp_path / "wide.png", max_pixels=40_000)
    with pytest.raises(ImageTooSmallError, match="under the 200 px"):
        load_image(tmp_path / "wide.png", min_side=200)


def test_encode_png_round_trip():
    image = torch.randint(0, 256, (3, 33, 47), dtype=torch.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(encode_png(image))))
    assert np.array_equal(decoded, image.permute(1, 2, 0).numpy())
