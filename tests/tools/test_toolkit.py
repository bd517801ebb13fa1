"""Toolkit registry, schemas in the paper's format, batched run with per-slot errors, PIL/numpy helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tooliqa_tools import (
    TOOLKITS,
    GammaConfig,
    MagnifierConfig,
    ToolCall,
    ToolError,
    ToolView,
    gamma_correct,
    image_to_tensor,
    magnify,
    make_toolkit,
    resize,
    tensor_to_numpy,
    tensor_to_pil,
)


def image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_registry_names_and_schema_format():
    assert set(TOOLKITS) == {"none", "magnifier", "gamma", "both"}
    assert make_toolkit("none").names == () and make_toolkit("none").schemas() == []
    assert make_toolkit("magnifier").names == ("magnifier",)
    assert make_toolkit("gamma").names == ("gamma_corrector",)
    magnifier, gamma = make_toolkit("both").schemas()
    assert set(magnifier) == {"name", "description", "parameters", "required"}
    assert magnifier["name"] == "magnifier" and magnifier["required"] == ["bbox_2d"]
    bbox = magnifier["parameters"]["bbox_2d"]
    assert bbox["type"] == "array" and bbox["range"] == [0, 1000] and "0 to 1000" in bbox["description"]
    assert gamma["name"] == "gamma_corrector" and gamma["required"] == ["mode"]
    assert gamma["parameters"]["mode"]["enum"] == ["brighten", "darken"]
    assert gamma["parameters"]["gamma"] == {
        "type": "number",
        "range": [0.2, 5.0],
        "description": "Optional explicit gamma: below 1 to brighten, above 1 to darken.",
    }
    with pytest.raises(ValueError, match="unknown toolkit 'all'"):
        make_toolkit("all")


def test_schemas_follow_the_configs():
    unit = make_toolkit("magnifier", magnifier=MagnifierConfig(coords="unit")).schemas()[0]
    assert unit["parameters"]["bbox_2d"]["range"] == [0, 1]
    pixel = make_toolkit("magnifier", magnifier=MagnifierConfig(coords="pixel")).schemas()[0]
    assert "range" not in pixel["parameters"]["bbox_2d"]
    gamma = make_toolkit("gamma", gamma=GammaConfig(brighten=0.4, max_gamma=3.0)).schemas()[0]
    assert gamma["parameters"]["gamma"]["range"] == [0.2, 3.0] and "gamma = 0.4" in gamma["description"]


def test_run_mixes_tools_sizes_and_failures():
    toolkit = make_toolkit("both")
    originals = [image(768, 1024), image(480, 640, 1), image(768, 1024, 2), image(480, 640, 3), image(64, 64, 4)]
    calls = [
        toolkit.parse('<tool_call>{"name": "magnifier", "arguments": {"bbox_2d": [250, 250, 750, 750]}}</tool_call>'),
        toolkit.parse('<tool_call>{"name": "gamma_corrector", "arguments": {"mode": "darken"}}</tool_call>'),
        ToolCall("magnifier", '{"bbox_2d": [900, 900, 100, 100]}'),  # built by hand: inverted → fails alone
        ToolCall("gamma_corrector", '{"mode": "brighten", "gamma": 0.3}'),
        ToolCall("magnifier", "not json"),
    ]
    results = toolkit.run(originals, calls)
    view, darker, inverted, brighter, broken = results
    assert isinstance(view, ToolView) and view.tool == "magnifier" and view.gamma is None
    assert view.box == (256, 192, 768, 576) and view.image.shape == (3, 768, 1024)
    assert torch.equal(view.image, magnify(originals[0], [250, 250, 750, 750])[0])
    assert view.description == "Magnified view of region [250, 250, 750, 750] of the original image."
    assert darker.gamma == 2.0 and darker.box is None and torch.equal(darker.image, gamma_correct(originals[1], 2.0))
    assert darker.description == "Gamma-corrected view (γ = 2, darkened) of the original image."
    assert brighter.gamma == 0.3 and torch.equal(brighter.image, gamma_correct(originals[3], 0.3))
    assert isinstance(inverted, ToolError) and "empty" in str(inverted) and inverted.tool == "magnifier"
    assert isinstance(broken, ToolError) and "not valid JSON" in str(broken)


def test_run_reports_the_region_actually_cropped():
    toolkit = make_toolkit("magnifier", magnifier=MagnifierConfig(min_pixels=1024))
    [view] = toolkit.run([image(100, 200)], [ToolCall("magnifier", '{"bbox_2d": [0, 0, 10, 10]}')])
    assert view.box == (0, 0, 28, 28)  # grown to the 28 px minimum
    assert view.description == "Magnified view of region [0, 0, 140, 280] of the original image."
    assert view.image.shape == (3, 96, 96)


def test_gamma_views_are_resized_to_multiples_of_32():
    small = make_toolkit("gamma", gamma=GammaConfig(min_pixels=1024))
    [view] = small.run([image(100, 150)], [ToolCall("gamma_corrector", '{"mode": "brighten"}')])
    assert view.image.shape == (3, 96, 160)


def test_gamma_views_are_planned_inside_the_pixel_bounds_in_one_resize():
    # 100 × 150 is below Qwen3-VL's 65,536-pixel minimum: the corrected view is enlarged as smart_resize would
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    [view] = make_toolkit("gamma").run([image(100, 150)], [ToolCall("gamma_corrector", '{"mode": "brighten"}')])
    assert tuple(view.image.shape[1:]) == smart_resize(100, 150, 32, 65_536, 16_777_216)
    budget = make_toolkit("gamma", gamma=GammaConfig(min_pixels=1024, max_pixels=64 * 64))
    [view] = budget.run([image(300, 200)], [ToolCall("gamma_corrector", '{"mode": "darken"}')])
    assert tuple(view.image.shape[1:]) == smart_resize(300, 200, 32, 1024, 64 * 64) == (64, 32)


def test_run_rejects_disabled_tools_per_slot_and_bad_originals_loudly():
    toolkit = make_toolkit("gamma")
    [refused] = toolkit.run([image(64, 64)], [ToolCall("magnifier", '{"bbox_2d": [0, 0, 10, 10]}')])
    assert isinstance(refused, ToolError) and "unknown tool 'magnifier'" in str(refused)
    with pytest.raises(ValueError, match=r"original 0 must be a uint8 or uint16 \[3, H, W\] tensor"):
        toolkit.run([image(64, 64).float()], [ToolCall("gamma_corrector", '{"mode": "darken"}')])
    with pytest.raises(ValueError, match="one original per call"):
        toolkit.run([], [ToolCall("gamma_corrector", '{"mode": "darken"}')])


def test_a_16_bit_original_gives_8_bit_views_gamma_from_all_16_bits():
    from tooliqa_tools import gamma_table16, to_uint8

    deep = torch.randint(0, 65536, (3, 64, 96), generator=torch.Generator().manual_seed(1)).to(torch.uint16)
    toolkit = make_toolkit("both")
    calls = [
        ToolCall("gamma_corrector", '{"mode": "brighten"}'),
        ToolCall("magnifier", '{"bbox_2d": [0, 0, 500, 500]}'),
    ]
    gamma, zoom = toolkit.run([deep, deep], calls)
    assert gamma.image.dtype == zoom.image.dtype == torch.uint8
    [expected_gamma] = toolkit.run([to_uint8(deep)], calls[:1])  # from 8 bits: a coarser view
    assert not torch.equal(gamma.image, expected_gamma.image)
    assert torch.equal(gamma.image, resize([gamma_table16(0.5)[deep.long()]], tuple(gamma.image.shape[1:]))[0])
    [expected_zoom] = toolkit.run([to_uint8(deep)], calls[1:])  # a crop gains nothing from depth
    assert torch.equal(zoom.image, expected_zoom.image)


def test_pil_and_numpy_helpers_round_trip():
    tensor = image(20, 30)
    array = tensor_to_numpy(tensor)
    assert array.shape == (20, 30, 3) and array.dtype == np.uint8
    assert torch.equal(image_to_tensor(array), tensor)
    assert torch.equal(image_to_tensor(tensor_to_pil(tensor)), tensor)
    gray = Image.fromarray(array[:, :, 0])
    assert torch.equal(image_to_tensor(gray), tensor[:1].expand(3, -1, -1))
    rgba = np.concatenate([array, np.full((20, 30, 1), 7, np.uint8)], axis=2)
    assert torch.equal(image_to_tensor(rgba), tensor)
    with pytest.raises(ValueError, match="uint8"):
        image_to_tensor(array.astype(np.float32))
