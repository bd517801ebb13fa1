"""Time all three rewards together (`compute_rewards`) and each alone, for the training shape and a large batch.

uv run python benchmarks/rewards_bench.py                 # CPU: B=12,G=4 and B=1024,G=16
uv run python benchmarks/rewards_bench.py --device cuda   # the same on a GPU (format stays on the CPU: text)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from tooliqa_rewards import FormatRecord, RewardInputs, bate_reward, compute_rewards, format_reward, rank_reward

RUBRIC = (
    "<thinking>Edges around the {obj} look {adj}; flat regions show little grain.</thinking>\n<answer>\n"
    "Sharpness: {sharp} - edges of the {obj} are {adj}\nNoise: None - clean\nArtifacts: Minor - faint blocks\n"
    "Exposure: Good - balanced\nSaliency Visibility: Subject Clear - the {obj} is easy to see\n</answer>"
)
CALL = (
    "<thinking>Zoom into the {obj} to check the texture.</thinking>\n<tool_call>\n"
    '{{"name": "magnifier", "arguments": {{"bbox_2d": [{x}, {y}, {x2}, {y2}]}}}}\n</tool_call>'
)
ANSWER = "<thinking>Mild softness, otherwise clean; quality is fair.</thinking>\n<answer>{score:.2f}</answer>"
OBJECTS = ("roof", "face", "flower", "car", "bird", "street sign")


def make_inputs(b: int, g: int, device: str, seed: int = 0) -> RewardInputs:
    """A batch like training's: KADID-like MOS with ties, 95% valid, ~45% tool, ~45% tool-free, ~10% failed calls."""
    gen = torch.Generator().manual_seed(seed)
    scores = (torch.rand(b, g, generator=gen) * 4 + 1).round(decimals=2)
    mos = (torch.rand(b, generator=gen) * 4 + 1).round(decimals=2)
    valid = torch.rand(b, g, generator=gen) > 0.05
    kind = torch.rand(b, g, generator=gen)
    used, free = kind < 0.45, kind >= 0.55
    n_ok = used.long() + (torch.rand(b, g, generator=gen) < 0.3).long() * used.long()
    n_failed = (~used & ~free).long()
    records = []
    for n, (calls, score) in enumerate(zip((n_ok + n_failed).flatten().tolist(), scores.flatten().tolist())):
        obj = OBJECTS[n % len(OBJECTS)]
        actions = tuple(
            CALL.format(obj=obj, x=10 * i + n % 97, y=20 + n % 89, x2=500 + n % 83, y2=600 + i) for i in range(calls)
        ) + (ANSWER.format(score=score),)
        rubric = RUBRIC.format(obj=obj, adj=("soft", "crisp", "blurry")[n % 3], sharp=("Low", "Medium", "High")[n % 3])
        records.append(FormatRecord(rubric, actions, (True,) * calls, score))
    tensors = {
        "scores": scores,
        "mos": mos,
        "valid": valid,
        "used_tool": used,
        "tool_free": free,
        "n_successful_calls": n_ok,
        "n_failed_calls": n_failed,
    }
    return RewardInputs(**{k: v.to(device) for k, v in tensors.items()}, format_records=tuple(records))


def timed(fn: Callable[[], object], repeats: int, device: str) -> tuple[float, float]:
    """(median, min) milliseconds of ``fn`` after two warm-up calls."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--shapes", default="12x4,1024x16", help="comma-separated BxG")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=0, help="timed runs per shape (0: 200 small, 10 large)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    gpu = f", {torch.cuda.get_device_name()}" if args.device == "cuda" else ""
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load avg {load:.1f}, device {args.device}{gpu}"
    )
    print("| B×G | all three (compute_rewards) median / min ms | rank | format | bate |")
    print("|---|---|---|---|---|")
    for shape in args.shapes.split(","):
        b, g = map(int, shape.split("x"))
        repeats = args.repeats or (200 if b * g <= 1024 else 10)
        x = make_inputs(b, g, args.device)
        rank = rank_reward(x.scores, x.mos, x.valid)
        cells = [
            timed(lambda x=x: compute_rewards(x), repeats, args.device),
            timed(lambda x=x: rank_reward(x.scores, x.mos, x.valid), repeats, args.device),
            timed(lambda x=x: format_reward(x.format_records), repeats, args.device),
            timed(lambda x=x, r=rank: bate_reward(r, x.used_tool, x.tool_free, x.valid), repeats, args.device),
        ]
        print(f"| {b}×{g} | " + " | ".join(f"{med:.3f} / {low:.3f}" for med, low in cells) + " |")


if __name__ == "__main__":
    main()
