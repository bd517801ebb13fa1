"""Magnifier geometry: coordinate systems, clamping, growth, aspect, view sizes and their caps."""

from __future__ import annotations

import math
import random

import pytest

from tooliqa_tools import CropPlan, MagnifierConfig, ToolError, plan_crop
from tooliqa_tools.ops.geometry import view_size

H, W = 768, 1024


def test_qwen1000_box_by_hand():
    # x: 102.4 … 614.4 → 102 … 615 (outward); y: 153.6 … 537.6 → 153 … 538. Crop 385 × 513 (h × w);
    # scale 1024 / 513 → 768.5 × 1024 → sides snap to 768 × 1024.
    assert plan_crop([100, 200, 600, 700], H, W, MagnifierConfig()) == CropPlan((102, 153, 615, 538), (768, 1024))


def test_same_region_in_every_coordinate_system():
    pixel = plan_crop([256, 192, 768, 576], H, W, MagnifierConfig(coords="pixel"))
    assert pixel == plan_crop([250, 250, 750, 750], H, W, MagnifierConfig(coords="qwen1000"))
    assert pixel == plan_crop([0.25, 0.25, 0.75, 0.75], H, W, MagnifierConfig(coords="unit"))
    assert pixel == CropPlan((256, 192, 768, 576), (768, 1024))  # 2× zoom of a 384 × 512 crop


def test_coordinates_are_never_guessed():
    # [0, 0, 1, 1] is a 1-pixel box in pixels, a tiny qwen1000 box, and the whole image only in "unit".
    assert plan_crop([0, 0, 1, 1], H, W, MagnifierConfig(coords="unit")).box == (0, 0, W, H)
    assert plan_crop([0, 0, 1, 1], H, W, MagnifierConfig(coords="pixel")).box == (0, 0, 28, 28)
    assert plan_crop([0, 0, 1, 1], H, W, MagnifierConfig()).box == (0, 0, 28, 28)


def test_clamping_into_the_image():
    assert plan_crop([-500, -10, 2000, 1500], H, W, MagnifierConfig()).box == (0, 0, W, H)
    assert plan_crop([-5, -5, 300, 100], H, W, MagnifierConfig(coords="pixel")).box == (0, 0, 300, 100)


def test_small_box_grows_around_its_centre_and_stays_inside():
    config = MagnifierConfig(coords="pixel")
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
        plan_crop(box, H, W, MagnifierConfig())
        return
    with pytest.raises(ToolError, match=message) as caught:
        plan_crop(box, H, W, MagnifierConfig())
    assert str(caught.value).startswith("magnifier: ") and caught.value.tool == "magnifier"


def test_view_sizes_hand_computed():
    config = MagnifierConfig()
    assert view_size(28, 28, 1024, config) == (96, 96)  # 4× cap: 112 would round up to 128 > 112 → floor to 96
    assert view_size(100, 50, 1024, config) == (384, 192)  # zoom 4 caps the 10.24× the long side asks for
    assert view_size(768, 1024, 1024, config) == (768, 1024)  # whole image: unchanged
    assert view_size(3000, 4000, 4000, config) == (3008, 4000)  # 12 MP: nearest multiples (93.75 → 94, 125)
    budget = MagnifierConfig(max_pixels=256 * 256)
    # sqrt(65536 / 196608) = 0.577 → 221.7 × 295.6 → nearest multiples 224 × 288 = 64512 ≤ 65536
    assert view_size(384, 512, 1024, budget) == (224, 288)
    assert view_size(400, 400, 1024, budget) == (256, 256)  # 256 × 256 exactly at the budget


def test_caps_and_multiples_hold_for_random_boxes():
    rng = random.Random(0)
    configs = [MagnifierConfig(), MagnifierConfig(max_pixels=300 * 300), MagnifierConfig(max_zoom=1.5, multiple=16)]
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
