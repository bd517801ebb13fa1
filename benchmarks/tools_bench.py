"""Per-image latency of the tools' torch ops vs PIL (issue 4), for batch sizes 1 / 12 / 48 at 1024×768.

    uv run python benchmarks/tools_bench.py                      # CPU (target: torch ≤ 1.5× PIL per image)
    uv run python benchmarks/tools_bench.py --device cuda        # GPU (target: ≥ 100× faster than PIL at batch 48)

PIL always runs on the CPU on PIL images (conversion not timed); torch runs on ``--device`` on a uint8 batch already
there (planning, validation and every kernel timed, CUDA synchronised). Each repeat times PIL and torch back to back
and the medians are reported, so load from other processes hits both alike. Every image gets its own box (zoom 1.7–4×)
and γ (0.5 / 2.0), as in a rollout.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from PIL import Image

from tooliqa_tools import (
    MagnifierConfig,
    ToolCall,
    gamma_correct,
    gamma_table,
    magnify,
    make_toolkit,
    plan_crop,
    tensor_to_pil,
)

BOXES = ([250, 250, 750, 750], [100, 300, 400, 700], [500, 100, 900, 600], [300, 400, 550, 650], [0, 0, 600, 450])


def photo_like(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]``: a smooth random field plus noise (neither flat nor pure noise)."""
    generator = torch.Generator().manual_seed(seed)
    field = torch.rand(batch, 3, height // 16, width // 16, generator=generator) * 255
    noise = torch.randn(batch, 3, height, width, generator=generator) * 12
    image = F.interpolate(field, size=(height, width), mode="bilinear") + noise
    return image.round().clamp(0, 255).to(torch.uint8)


def timed(fn: Callable[[], object], sync: Callable[[], None]) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def bench_batch(batch: int, args: argparse.Namespace, device: torch.device) -> None:
    """Print one table row per op for ``batch`` images."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    config = MagnifierConfig()
    cpu_images = photo_like(batch, args.height, args.width)
    images = cpu_images.to(device)
    pils = [tensor_to_pil(image) for image in cpu_images]
    boxes = [BOXES[i % len(BOXES)] for i in range(batch)]
    gammas = [0.5 if i % 2 == 0 else 2.0 for i in range(batch)]
    luts = {g: gamma_table(g).tolist() * 3 for g in set(gammas)}
    plans = [plan_crop(box, args.height, args.width, config) for box in boxes]
    toolkit, originals = make_toolkit("gamma"), list(images.unbind(0))
    calls = [ToolCall("gamma_corrector", '{"mode": "%s"}' % ("brighten" if g < 1 else "darken")) for g in gammas]

    # Both sides return every view, as a caller needs them: the B outputs are alive together on each side.
    def pil_magnify():
        return [pil.crop(plan.box).resize(plan.size[::-1], Image.BICUBIC) for pil, plan in zip(pils, plans)]

    def pil_gamma():
        return [pil.point(luts[g]) for pil, g in zip(pils, gammas)]

    ops = {
        "magnify": (pil_magnify, lambda: magnify(images, boxes, config)),
        "gamma_correct (batch tensor)": (pil_gamma, lambda: gamma_correct(images, gammas)),
        "gamma via Toolkit.run (views)": (pil_gamma, lambda: toolkit.run(originals, calls)),
    }
    medians = {}
    for op, (pil_fn, torch_fn) in ops.items():
        torch_fn(), torch_fn()  # warm-up: kernels, caches, allocator
        pil_times, torch_times = [], []
        for _ in range(args.repeats):
            pil_times.append(timed(pil_fn, lambda: None))
            torch_times.append(timed(torch_fn, sync))
        medians[op] = (statistics.median(pil_times) / batch * 1e3, statistics.median(torch_times) / batch * 1e3)
    pil_both = medians["magnify"][0] + medians["gamma via Toolkit.run (views)"][0]
    torch_both = medians["magnify"][1] + medians["gamma via Toolkit.run (views)"][1]
    medians["both (magnify + gamma views)"] = (pil_both, torch_both)
    for op, (pil_ms, torch_ms) in medians.items():
        print(f"| {op} | {batch} | {pil_ms:.3f} | {torch_ms:.4f} | {torch_ms / pil_ms:.2f} | {pil_ms / torch_ms:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 12, 48])
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__} on {name}; {args.width}×{args.height} uint8; median of {args.repeats} repeats")
    print("| op | batch | PIL ms/img | torch ms/img | torch / PIL | PIL / torch |")
    print("|---|---:|---:|---:|---:|---:|")
    for batch in args.batch_sizes:
        bench_batch(batch, args, device)


if __name__ == "__main__":
    main()
