"""Magnifier geometry: coordinate systems, clamping, growth, aspect, view sizes and their caps."""

from __future__ import annotations

import math
import random

import pytest

from tooliqa_tools import CropPlan, MagnifierConfig, ToolError, plan_crop
from tooliqa_tools.ops.geometry import fit_pixels, view_size

H, W = 768, 1024


def test_qwen1000_box_by_hand():
    # x: 102.4 … 614.4 → 102 … 615 (outward); y: 153.6 … 537.6 → 153 … 538. Crop 385 × 513 (h × w);
    # scale 1024 / 513 → 768.5 × 1024 → sides snap to 768 × 1024.
    assert plan_crop([100, 200, 600, 700], H, W, MagnifierConfig(min_pixels=1)) == CropPlan(
        (102, 153, 615, 538), (768, 1024)
    )


def test_same_region_in_every_coordinate_system():
    pixel = plan_crop([256, 192, 768, 576], H, W, MagnifierConfig(min_pixels=1, coords="pixel"))
    assert pixel == plan_crop([250, 250, 750, 750], H, W, MagnifierConfig(min_pixels=1, coords="qwen1000"))
    assert pixel == plan_crop([0.25, 0.25, 0.75, 0.75], H, W, MagnifierConfig(min_pixels=1, coords="unit"))
    assert pixel == CropPlan((256, 192, 768, 576), (768, 1024))  # 2× zoom of a 384 × 512 crop


def test_coordinates_are_never_guessed():
    # [0, 0, 1, 1] is a 1-pixel box in pixels, a tiny qwen1000 box, and the whole image only in "unit".
    assert plan_crop([0, 0, 1, 1], H, W, MagnifierConfig(min_pixels=1, coords="unit")).box == (0, 0, W, H)
    assert plan_crop([0, 0, 1, 1], H, W, MagnifierConfig(min_pixels=1, coords="pixel")).box == (0, 0, 28, 28)
    assert plan_crop([0, 0, 1, 1], H, W, MagnifierConfig(min_pixels=1)).box == (0, 0, 28, 28)


def test_clamping_into_the_image():
    assert plan_crop([-500, -10, 2000, 1500], H, W, MagnifierConfig(min_pixels=1)).box == (0, 0, W, H)
    assert plan_crop([-5, -5, 300, 100], H, W, MagnifierConfig(min_pixels=1, coords="pixel")).box == (0, 0, 300, 100)


def test_small_box_grows_around_its_centre_and_stays_inside():
    config = MagnifierConfig(min_pixels=1, coords="pixel")
    assert plan_crop([500, 300, 510, 304], H, W, config).box == (491, 288, 519, 316)  # centre (505, 302)
    assert plan_crop([1020, 760, 1024, 768], H, W, config).box == (996, 740, 1024, 768)  # shifted inside
    assert plan_crop([0, 0, 5, 5], 20, 24, config).box == (0, 0, 24, 20)  # image smaller than 28: whole side


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ([600, 100, 100, 600], "empty"),  # inverted
        ([100, 100, 100, 600], "empty"),  # zero width
        ([1100, 0, 1200, 500], "empty"),  # fully outside: clamps to nothing
        ([0, 0, 1000, 5], "aspect ratio"),  # 1024 × 3.84 px
        ([0, 0, 1, 2], None),  # tiny but aspect 1.33: grows, fine
        ([0, 0, 3], "needs 4 numbers, got 3"),
        ([0, 0, 3, 4, 5], "needs 4 numbers, got 5"),
        ([0, "1", 3, 4], "needs 4 numbers"),
        ([0, None, 3, 4], "needs 4 numbers"),
        ([0, True, 3, 4], "needs 4 numbers"),
        ([0, float("nan"), 3, 4], "finite"),
        ([0, 0, float("inf"), 4], "finite"),
        ([0, 0, 10**400, 4], "finite"),
        ("[0, 0, 3, 4]", "list of 4 numbers"),
        ({"x1": 0}, "list of 4 numbers"),
        (5, "list of 4 numbers"),
    ],
)
def test_bad_boxes(box, message):
    if message is None:
        plan_crop(box, H, W, MagnifierConfig(min_pixels=1))
        return
    with pytest.raises(ToolError, match=message) as caught:
        plan_crop(box, H, W, MagnifierConfig(min_pixels=1))
    assert str(caught.value).startswith("magnifier: ") and caught.value.tool == "magnifier"


def test_view_sizes_hand_computed():
    config = MagnifierConfig(min_pixels=1)
    assert view_size(28, 28, 1024, config) == (96, 96)  # 4× cap: 112 would round up to 128 > 112 → floor to 96
    assert view_size(100, 50, 1024, config) == (384, 192)  # zoom 4 caps the 10.24× the long side asks for
    assert view_size(768, 1024, 1024, config) == (768, 1024)  # whole image: unchanged
    assert view_size(3000, 4000, 4000, config) == (3008, 4000)  # 12 MP: nearest multiples (93.75 → 94, 125)
    budget = MagnifierConfig(min_pixels=1, max_pixels=256 * 256)
    # sqrt(65536 / 196608) = 0.577 → 221.7 × 295.6 → nearest multiples 224 × 288 = 64512 ≤ 65536
    assert view_size(384, 512, 1024, budget) == (224, 288)
    assert view_size(400, 400, 1024, budget) == (256, 256)  # 256 × 256 exactly at the budget


def test_caps_and_multiples_hold_for_random_boxes():
    rng = random.Random(0)
    configs = [
        MagnifierConfig(min_pixels=1),
        MagnifierConfig(min_pixels=1, max_pixels=300 * 300),
        MagnifierConfig(min_pixels=1, max_zoom=1.5, multiple=16),
    ]
    for _ in range(3000):
        config = rng.choice(configs)
        height, width = rng.randint(28, 2000), rng.randint(28, 2000)
        x1, x2 = sorted(rng.uniform(-100, 1100) for _ in range(2))
        y1, y2 = sorted(rng.uniform(-100, 1100) for _ in range(2))
        try:
            plan = plan_crop([x1, y1, x2, y2], height, width, config)
        except ToolError:
            continue
        (crop_h, crop_w), (out_h, out_w) = plan.crop_size, plan.size
        bx1, by1, bx2, by2 = plan.box
        assert 0 <= bx1 < bx2 <= width and 0 <= by1 < by2 <= height
        assert crop_h >= min(28, height) and crop_w >= min(28, width)
        assert out_h % config.multiple == 0 and out_w % config.multiple == 0
        assert out_h <= crop_h * config.max_zoom + 1e-9 and out_w <= crop_w * config.max_zoom + 1e-9
        assert out_h * out_w <= config.max_pixels
        # The longer side approaches the original's longer side unless a cap binds.
        scale = min(max(height, width) / max(crop_h, crop_w), config.max_zoom)
        scale = min(scale, math.sqrt(config.max_pixels / (crop_h * crop_w)))
        assert abs(max(out_h, out_w) - max(crop_h, crop_w) * scale) <= config.multiple


def test_config_validation():
    with pytest.raises(ValueError, match="coords"):
        MagnifierConfig(coords="relative")
    with pytest.raises(ValueError, match="max_zoom"):
        MagnifierConfig(max_zoom=1.0)  # 28 × 1 < 32: the smallest view could not respect the cap
    with pytest.raises(ValueError, match="max_pixels"):
        MagnifierConfig(max_pixels=100)


@pytest.mark.parametrize(
    ("config", "sides"),
    [
        (MagnifierConfig(), (64, 3000)),  # Qwen3-VL-8B's processor: 65,536 – 16,777,216 pixels
        (MagnifierConfig(min_pixels=1024, max_pixels=4096), (64, 512)),  # the CPU demo's kit: thin boxes bind
    ],
)
def test_views_are_planned_inside_the_processor_bounds_in_one_resize(config, sides):
    """Issue 13.7: a crop whose capped view would fall under the processor's minimum grows around its centre instead
    of being resized a second time by the processor (which zoomed 5.7–6.2× past the 4× cap)."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    rng = random.Random(1)
    for _ in range(3000):
        height, width = rng.randint(*sides), rng.randint(*sides)
        x1, x2 = sorted(rng.uniform(0, 1000) for _ in range(2))
        y1, y2 = sorted(rng.uniform(0, 1000) for _ in range(2))
        try:
            plan = plan_crop([x1, y1, x2, y2], height, width, config)
        except ToolError:
            continue
        (crop_h, crop_w), (out_h, out_w) = plan.crop_size, plan.size
        # the processor leaves the view as it is: one resize in all
        assert smart_resize(out_h, out_w, 32, config.min_pixels, config.max_pixels) == (out_h, out_w)
        assert config.min_pixels <= out_h * out_w <= config.max_pixels
        if height * width * config.max_zoom**2 >= 2 * config.min_pixels:  # the original is large enough
            assert out_h <= crop_h * config.max_zoom + 1e-9 and out_w <= crop_w * config.max_zoom + 1e-9
        # the box asked for is inside the crop
        px1, px2 = x1 * width / 1000, x2 * width / 1000
        bx1, _, bx2, _ = plan.box
        assert bx1 <= math.floor(px1 + 1e-6) + 1 and bx2 >= min(math.ceil(px2 - 1e-6), width) - 1


def test_a_thin_crop_keeps_the_zoom_cap_and_the_long_side():
    # 1024 × 768, a 40 × 200 px strip: at the 4× cap it would be 160 × 800 = 128,000 ≥ 65,536: no growth needed
    plan = plan_crop([100, 100, 140, 300], 1000, 1000, MagnifierConfig(coords="pixel"))
    assert plan.box == (100, 100, 140, 300) and plan.size == (800, 160)
    # a 30 × 30 px box: 4× gives 14,400 < 65,536 → the crop grows around its centre to 64 × 64, viewed at 4×
    plan = plan_crop([500, 500, 530, 530], 1000, 1000, MagnifierConfig(coords="pixel"))
    (x1, y1, x2, y2), size = plan.box, plan.size
    assert (x2 - x1, y2 - y1) == (64, 64) and (x1 + x2) / 2 == pytest.approx(515, abs=1) and size == (256, 256)
    # an original too small for the minimum even whole at 4× (60 × 60 → 240 × 240 < 256²): the minimum wins
    plan = plan_crop([0, 0, 1000, 1000], 60, 60, MagnifierConfig())
    assert plan.box == (0, 0, 60, 60) and plan.size == (256, 256)


def test_fit_pixels_is_smart_resize():
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    rng = random.Random(2)
    for _ in range(2000):
        height, width = rng.randint(32, 4000), rng.randint(32, 4000)
        if max(height, width) / min(height, width) > 100:
            continue
        low = rng.choice([1024, 65_536, 200_000])
        high = rng.choice([4096, 1_000_000, 16_777_216])
        if high < low:
            continue
        assert fit_pixels(height, width, low, high, 32) == smart_resize(height, width, 32, low, high)
