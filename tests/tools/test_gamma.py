"""Gamma Corrector op: exact uint8 LUT, float pow, batching, layouts, validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tooliqa_tools import ToolError, gamma_correct, gamma_correct_many, gamma_table

GAMMAS = (0.2, 0.5, 0.7, 1.0, 1.3, 2.0, 3.7, 5.0)


def numpy_lut(gamma: float) -> np.ndarray:
    return np.round(255.0 * (np.arange(256) / 255.0) ** gamma).astype(np.uint8)


@pytest.fixture(scope="module")
def every_value() -> torch.Tensor:
    """uint8 [3, 16, 16]: every byte value once per channel, shuffled, plus a batch dimension later."""
    generator = torch.Generator().manual_seed(0)
    return torch.stack([torch.randperm(256, generator=generator).view(16, 16) for _ in range(3)]).to(torch.uint8)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_uint8_equals_numpy_lut_exactly(every_value, gamma):
    expected = torch.from_numpy(numpy_lut(gamma)[every_value.numpy()])
    assert torch.equal(gamma_correct(every_value, gamma), expected)
    assert torch.equal(gamma_table(gamma), torch.from_numpy(numpy_lut(gamma)))


def test_known_values_by_hand():
    x = torch.tensor([0, 64, 128, 255], dtype=torch.uint8).view(1, 1, 4).expand(3, 1, 4).contiguous()
    # 255·sqrt(64/255) = 127.75 → 128; 255·sqrt(128/255) = 180.66 → 181; (128/255)²·255 = 64.25 → 64
    assert gamma_correct(x, 0.5)[0, 0].tolist() == [0, 128, 181, 255]
    assert gamma_correct(x, 2.0)[0, 0].tolist() == [0, 16, 64, 255]


def test_batch_with_per_image_gammas_and_layouts(every_value):
    batch = torch.stack([every_value, every_value.flip(-1), every_value.flip(-2)])
    gammas = [0.5, 2.0, 3.0]
    expected = torch.stack([gamma_correct(image, g) for image, g in zip(batch, gammas)])
    for gammas_as in (gammas, torch.tensor(gammas), np.array(gammas)):
        assert torch.equal(gamma_correct(batch, gammas_as), expected)
    channels_last = batch.contiguous(memory_format=torch.channels_last)
    out = gamma_correct(channels_last, gammas)
    assert torch.equal(out, expected) and out.stride() == channels_last.stride()  # layout kept, no copy back
    assert torch.equal(gamma_correct(batch[:, :, ::2, 1:], gammas), expected[:, :, ::2, 1:])  # strided views
    assert torch.equal(gamma_correct(batch.permute(1, 0, 2, 3).contiguous().permute(1, 0, 2, 3), gammas), expected)
    assert torch.equal(gamma_correct(batch, 2.0), gamma_correct(batch, [2.0, 2.0, 2.0]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("gamma", GAMMAS)
def test_float_equals_pow(dtype, gamma):
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=dtype)
    x[0, 0, 0, :2] = torch.tensor([0.0, 1.0], dtype=dtype)
    out = gamma_correct(x, gamma)
    assert out.dtype == dtype and out.shape == x.shape
    assert (out - x**gamma).abs().max().item() <= 1e-6
    assert (gamma_correct(x, [gamma, 0.5])[1] - x[1] ** 0.5).abs().max().item() <= 1e-6


def test_float_out_of_range_is_clamped():
    x = torch.tensor([-0.5, 0.25, 1.5]).view(1, 1, 3).expand(3, 1, 3)
    assert gamma_correct(x, 0.5)[0, 0].tolist() == [0.0, 0.5, 1.0]


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "0.5", True, None, 10**400, [0.5, 0.5]])
def test_bad_gamma_is_tool_error(every_value, bad):
    with pytest.raises(ToolError, match="gamma_corrector: "):
        gamma_correct(every_value, bad)


def test_bad_images_are_value_errors():
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        gamma_correct(torch.zeros(4, 8, 8, dtype=torch.uint8), 0.5)
    with pytest.raises(ValueError, match="uint8, uint16 or floating"):
        gamma_correct(torch.zeros(3, 8, 8, dtype=torch.int32), 0.5)


def test_accelerator_gather_path_equals_the_lut_on_cpu(every_value):
    # CUDA runs gather_luts; CPU CI checks its indexing (per-image table offsets) here.
    from tooliqa_tools.ops.gamma import gather_luts

    batch = torch.stack([every_value, every_value.flip(-1)])
    expected = torch.stack([gamma_correct(batch[0], 0.5), gamma_correct(batch[1], 3.0)])
    assert torch.equal(gather_luts(batch, [0.5, 3.0]), expected)


def test_gamma_correct_many_over_mixed_sizes_layouts_and_dtypes(every_value):
    from tooliqa_tools import gamma_correct_many

    images = [every_value, every_value[:, :8], every_value.permute(1, 2, 0).contiguous().permute(2, 0, 1)]
    images.append(every_value.float() / 255)
    views = gamma_correct_many(images, [0.5, 2.0, 0.5, 2.0])
    assert torch.equal(views[0], gamma_correct(every_value, 0.5))
    assert torch.equal(views[1], gamma_correct(every_value[:, :8], 2.0))
    assert torch.equal(views[2], views[0]) and views[2].stride() == images[2].stride()
    assert (views[3] - images[3] ** 2.0).abs().max().item() <= 1e-6
    before = every_value.clone()
    views[0].fill_(0)  # a fresh, writable tensor: the input is untouched
    assert torch.equal(every_value, before)


def test_16_bit_originals_go_through_an_exact_16_to_8_bit_table():
    from tooliqa_tools import gamma_table16, to_uint8

    table = gamma_table16(0.5)
    levels = np.arange(65536) / 65535
    assert table.dtype == torch.uint8 and table.shape == (65536,)
    assert np.array_equal(table.numpy(), np.round(255 * np.sqrt(levels)).astype(np.uint8))
    image = torch.randint(0, 65536, (3, 40, 56), generator=torch.Generator().manual_seed(0)).to(torch.uint16)
    out = gamma_correct(image, 0.5)
    assert out.dtype == torch.uint8 and torch.equal(out, table[image.long()])
    assert torch.equal(gamma_correct(torch.stack([image, image]), [0.5, 2.0])[1], gamma_table16(2.0)[image.long()])
    assert torch.equal(gamma_correct_many([image], [0.5])[0], out)
    # the 8-bit rendering rounds x · 255 / 65535 half up, exactly
    assert np.array_equal(
        to_uint8(image).numpy(), np.floor(image.numpy().astype(np.int64) * 255 / 65535 + 0.5).astype(np.uint8)
    )
