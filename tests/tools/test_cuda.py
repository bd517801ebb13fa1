"""The same results on CUDA as on CPU (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

from tooliqa_tools import MagnifierConfig, ToolCall, ToolView, gamma_correct, magnify, make_toolkit, plan_crop
from tooliqa_tools.ops import triton_lut, triton_resize
from tooliqa_tools.ops.resize import resize_float

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
BOXES = [[0, 0, 500, 500], [250, 250, 750, 750], [100, 300, 400, 700], [0, 0, 1000, 1000], [480, 470, 500, 500]]


def images(batch: int = 5) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    field = torch.rand(batch, 3, 24, 32, generator=generator) * 255
    smooth = torch.nn.functional.interpolate(field, size=(384, 512), mode="bilinear")
    return (smooth + torch.randn(batch, 3, 384, 512, generator=generator) * 10).round().clamp(0, 255).to(torch.uint8)


def test_gamma_uint8_is_identical_on_cuda():
    cpu = images()
    gammas = [0.5, 2.0, 0.2, 5.0, 1.7]
    out = gamma_correct(cpu.cuda(), gammas)
    assert out.is_cuda and torch.equal(out.cpu(), gamma_correct(cpu, gammas))
    assert torch.equal(gamma_correct(cpu[0].cuda(), 0.5).cpu(), gamma_correct(cpu[0], 0.5))


def test_the_triton_lut_kernel_runs_on_cuda():
    assert triton_lut.available()  # the fast path is what the GPU numbers measure
    cpu = images(2)
    tables = torch.stack([torch.arange(256, dtype=torch.uint8).flip(0), torch.arange(256, dtype=torch.uint8)])
    out = triton_lut.apply_luts(cpu.cuda(), tables.cuda()).cpu()
    assert torch.equal(out[0], 255 - cpu[0]) and torch.equal(out[1], cpu[1])


def test_gamma_float_matches_on_cuda():
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    out = gamma_correct(x.cuda(), [0.5, 2.0, 0.3, 4.0]).cpu()
    assert (out - gamma_correct(x, [0.5, 2.0, 0.3, 4.0])).abs().max().item() <= 1e-6


def test_magnify_on_cuda_close_to_cpu():
    # CUDA computes in float; the CPU uint8 kernel rounds and clips between its two passes as PIL does. Measured on
    # this content (CPU float path as a stand-in): max 3 levels, mean ≤ 0.23.
    cpu = images()
    on_gpu = magnify(cpu.cuda(), BOXES)
    for gpu_view, cpu_view in zip(on_gpu, magnify(cpu, BOXES)):
        assert gpu_view.is_cuda and gpu_view.dtype == torch.uint8 and gpu_view.shape == cpu_view.shape
        difference = (gpu_view.cpu().int() - cpu_view.int()).abs()
        assert difference.max().item() <= 3 and difference.float().mean().item() <= 0.3


def test_magnify_on_cuda_equals_the_float_path_on_cpu():
    cpu = images(2)
    for image, box in zip(cpu, BOXES[1:3]):
        plan = plan_crop(box, 384, 512, MagnifierConfig())
        x1, y1, x2, y2 = plan.box
        [gpu_view] = magnify(image.cuda(), box)
        reference = resize_float([image[:, y1:y2, x1:x2]], plan.size)[0]
        assert (gpu_view.cpu().int() - reference.int()).abs().max().item() <= 1


@pytest.mark.parametrize(
    ("size", "out"), [((384, 512), (768, 1024)), ((28, 28), (96, 96)), ((300, 200), (128, 96)), ((90, 120), (64, 160))]
)
def test_triton_resize_equals_the_float_path(size, out):
    assert triton_resize.available()
    image = images(1)[0, :, : size[0], : size[1]]
    fast = triton_resize.resize_uint8([image.cuda()], out).cpu()
    reference = resize_float([image], out)
    assert fast.shape == reference.shape and (fast.int() - reference.int()).abs().max().item() <= 1


def test_magnify_float_on_cuda_matches_cpu():
    x = images(2).float() / 255
    for gpu_view, cpu_view in zip(magnify(x.cuda(), BOXES[:2]), magnify(x, BOXES[:2])):
        assert (gpu_view.cpu() - cpu_view).abs().max().item() <= 1e-4


def test_toolkit_run_keeps_views_on_the_device():
    toolkit = make_toolkit("both")
    originals = [image.cuda() for image in images(3)]
    calls = [
        ToolCall("magnifier", '{"bbox_2d": [250, 250, 750, 750]}'),
        ToolCall("gamma_corrector", '{"mode": "brighten"}'),
        ToolCall("magnifier", '{"bbox_2d": [750, 750, 250, 250]}'),
    ]
    view, gamma, failed = toolkit.run(originals, calls)
    assert isinstance(view, ToolView) and view.image.is_cuda and view.image.shape == (3, 384, 512)
    assert isinstance(gamma, ToolView) and gamma.image.is_cuda
    assert torch.equal(gamma.image.cpu(), gamma_correct(originals[1].cpu(), 0.5))
    assert not isinstance(failed, ToolView)
