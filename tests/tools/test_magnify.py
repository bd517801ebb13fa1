"""Magnifier op: crop equals PIL's crop, the view is within tolerance of PIL bicubic, batching and devices."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tooliqa_tools import (
    CropPlan,
    MagnifierConfig,
    ToolError,
    image_to_tensor,
    magnify,
    plan_crop,
    render_crops,
    resize,
    tensor_to_pil,
)

PIXEL = MagnifierConfig(min_pixels=1, coords="pixel")
SMALL = MagnifierConfig(min_pixels=1024)  # a tiny processor's minimum: small test images keep their scale


def noise(height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def smooth(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Photo-like content: a low-resolution random field upsampled bilinearly."""
    small = torch.rand(1, 3, max(height // 8, 2), max(width // 8, 2), generator=torch.Generator().manual_seed(seed))
    return F.interpolate(small * 255, size=(height, width), mode="bilinear").round().to(torch.uint8)[0]


def pil_view(image: torch.Tensor, plan: CropPlan) -> torch.Tensor:
    out_h, out_w = plan.size
    return image_to_tensor(tensor_to_pil(image).crop(plan.box).resize((out_w, out_h), Image.BICUBIC))


@pytest.mark.parametrize("box", [(0, 0, 96, 64), (37, 11, 301, 250), (100, 190, 101, 250), (5, 5, 319, 255)])
def test_crop_before_resize_equals_pil_crop(box):
    image = noise(256, 320)
    x1, y1, x2, y2 = box
    expected = image_to_tensor(tensor_to_pil(image).crop(box))
    # A plan whose view size is the crop size isolates the crop: no resampling happens.
    [crop] = render_crops([image], [CropPlan(box, (y2 - y1, x2 - x1))])
    assert torch.equal(crop, expected)


def test_integer_pixel_box_at_zoom_one_is_the_exact_crop():
    image = noise(256, 320)
    # A full-width band: its longer side already equals the original's, and 160 × 320 are multiples of 32.
    [view] = magnify(image, [0, 64, 320, 224], PIXEL)
    assert torch.equal(view, image_to_tensor(tensor_to_pil(image).crop((0, 64, 320, 224))))


@pytest.mark.parametrize("content", [noise, smooth])
@pytest.mark.parametrize(
    "box", [(0, 0, 160, 120), (13, 7, 113, 82), (150, 100, 178, 128), (40, 30, 290, 230), (0, 0, 320, 240)]
)
def test_upscaled_view_within_two_levels_of_pil_bicubic(content, box):
    image = content(240, 320, seed=sum(box))
    plan = plan_crop(box, 240, 320, PIXEL)
    [view] = magnify(image, box, PIXEL)
    assert view.shape == (3, *plan.size) and view.dtype == torch.uint8
    difference = (view.int() - pil_view(image, plan).int()).abs()
    assert difference.max().item() <= 2
    assert difference.float().mean().item() <= 0.02


def test_downscaled_view_within_two_levels_of_pil_bicubic_on_photo_content():
    image = smooth(480, 640)
    config = MagnifierConfig(min_pixels=1, coords="pixel", max_pixels=256 * 192)  # the pixel budget forces a shrink
    plan = plan_crop([0, 0, 640, 480], 480, 640, config)
    assert plan.size == (192, 256)
    [view] = magnify(image, [0, 0, 640, 480], config)
    difference = (view.int() - pil_view(image, plan).int()).abs()
    assert difference.max().item() <= 2 and difference.float().mean().item() <= 0.2


def test_float_path_matches_uint8_path():
    # The float path is what CUDA runs; on CPU it must agree with the uint8 kernel to within rounding.
    image = smooth(120, 160)
    box = [20, 10, 100, 70]
    [u8] = magnify(image, box, PIXEL)
    [f32] = magnify(image.float() / 255, box, PIXEL)
    assert f32.dtype == torch.float32 and 0 <= f32.min() and f32.max() <= 1
    assert ((f32 * 255).round() - u8.float()).abs().max().item() <= 1


def test_batch_equals_single_calls_and_keeps_order():
    batch = torch.stack([noise(96, 128, seed=s) for s in range(4)])
    boxes = [[0, 0, 500, 500], [100, 100, 900, 900], [0, 0, 500, 500], [0, 0, 1000, 1000]]
    views = magnify(batch, boxes, SMALL)
    assert [tuple(v.shape) for v in views] == [(3, 96, 128), (3, 96, 128), (3, 96, 128), (3, 96, 128)]
    for image, box, view in zip(batch, boxes, views):
        assert torch.equal(view, magnify(image, box, SMALL)[0])
    assert torch.equal(views[3], batch[3])  # the whole image at its own size is itself
    assert all(torch.equal(a, b) for a, b in zip(magnify(batch, torch.tensor(boxes), SMALL), views))


def test_images_of_different_sizes():
    images = [noise(96, 128), noise(64, 64, seed=1), noise(200, 50, seed=2)]
    views = magnify(images, [[0, 0, 500, 500]] * 3, SMALL)
    assert [tuple(v.shape) for v in views] == [(3, 96, 128), (3, 64, 64), (3, 192, 64)]
    # Qwen3-VL's processor keeps ≥ 65,536 pixels: each view is planned up to that minimum in its one resize
    assert all(v.shape[1] * v.shape[2] >= 65_536 for v in magnify(images, [[0, 0, 500, 500]] * 3))


def test_bad_boxes_name_the_image():
    batch = torch.stack([noise(64, 64), noise(64, 64, seed=1)])
    with pytest.raises(ToolError, match=r"needs 4 numbers, got 3 \(image 1\)"):
        magnify(batch, [[0, 0, 10, 10], [0, 0, 10]])
    with pytest.raises(ToolError, match=r"one box per image \(2\), got 1"):
        magnify(batch, [[0, 0, 10, 10]])
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        magnify(torch.zeros(1, 64, 64, dtype=torch.uint8), [0, 0, 10, 10])


def test_resize_paths_agree_with_pil_on_one_axis():
    image = noise(50, 70)
    expected = image_to_tensor(tensor_to_pil(image).resize((96, 50), Image.BICUBIC))
    assert (resize(image[None], (50, 96))[0].int() - expected.int()).abs().max().item() <= 1


def test_accelerator_float_path_on_uint8_matches_the_cpu_kernel():
    # CUDA has no uint8 antialiased kernel and runs resize_float; CPU CI checks its uint8 round trip here.
    from tooliqa_tools.ops.resize import resize_float, resize_uint8_cpu

    image = smooth(90, 120)
    for size in [(192, 256), (64, 96), (90, 128)]:
        portable, fast = resize_float([image], size), resize_uint8_cpu([image], size)
        assert portable.dtype == torch.uint8 and portable.shape == fast.shape == (1, 3, *size)
        assert (portable.int() - fast.int()).abs().max().item() <= 1


@pytest.mark.parametrize(("size", "out"), [((384, 512), (768, 1024)), ((28, 28), (96, 96)), ((100, 60), (50, 30))])
def test_bicubic_weights_reproduce_torch_antialias(size, out):
    # The CUDA Triton kernel resamples with these weights; a dense-matrix product must equal torch's AA kernel.
    from tooliqa_tools.ops.bicubic_weights import dense_matrix

    x = torch.rand(3, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 255
    reference = F.interpolate(x[None], size=out, mode="bicubic", antialias=True)[0]
    mine = dense_matrix(size[0], out[0]) @ x @ dense_matrix(size[1], out[1]).T
    assert (mine - reference).abs().max().item() <= 1e-3
