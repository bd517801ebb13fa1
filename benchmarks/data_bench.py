"""Time the data side of evaluation and demo training: the synthetic set, image decoding, the runner, the metrics.

uv run python benchmarks/data_bench.py                # CPU only: nothing here runs on a GPU

- synthetic set: seconds to write 8 references x 10 distortions x 5 levels (400 images);
- runner throughput with a trivial assessor (mean pixel), i.e. everything except the model — decoding, batching,
  predictions.csv/jsonl writes — for load_workers 1 and 2, on the synthetic PNGs and on the 2,000 real BIQ2021
  512x512 JPEGs of ../shared/data/biq2021 when present;
- metrics on 10,000 pairs (SRCC/PLCC via torchmetrics, logistic PLCC, KRCC, 1,000 bootstrap resamples).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from tooliqa_data import Assessment, EvalConfig, evaluate, load_dataset, make_synthetic_set
from tooliqa_data.metrics import bootstrap_ci, krcc, plcc, plcc_logistic, srcc

BIQ2021 = Path(__file__).resolve().parents[2] / "shared" / "data" / "biq2021"


def mean_pixel(items, images):
    return [Assessment(float(image.float().mean())) for image in images]


def time_runner(dataset, workers: int, out: Path) -> float:
    config = EvalConfig(batch_size=16, load_workers=workers, progress=False, plots=False, report_samples=0)
    start = time.perf_counter()
    evaluate([dataset], mean_pixel, out, config)
    return len(dataset.items) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=10_000, help="pairs for the metric timings")
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        make_synthetic_set(tmp / "synthetic", 8, seed=0)
        print(f"synthetic set, 400 images: {time.perf_counter() - start:.2f} s")
        sets = [("synthetic PNG/JPEG 96-160 px", load_dataset("csv", tmp / "synthetic", dataset_name="synthetic"))]
        if BIQ2021.exists():
            sets.append(("BIQ2021 JPEG 512x512", load_dataset("biq2021", BIQ2021)))
        time_runner(sets[0][1], 1, tmp / "warmup")  # first call pays the lazy imports (torchmetrics, matplotlib)
        for label, dataset in sets:
            for workers in (1, 2):
                rate = time_runner(dataset, workers, tmp / f"run-{label[:3]}-{workers}")
                print(
                    f"runner, trivial assessor, {label}, {len(dataset.items)} images, load_workers={workers}: "
                    f"{rate:.0f} images/s"
                )
    rng = np.random.default_rng(0)
    mos = rng.uniform(1, 5, args.pairs)
    pred = mos + rng.normal(0, 0.8, args.pairs)
    for name, fn in (("srcc", srcc), ("plcc", plcc), ("plcc_logistic", plcc_logistic), ("krcc", krcc)):
        start = time.perf_counter()
        fn(pred, mos)
        print(f"{name}, {args.pairs} pairs: {1e3 * (time.perf_counter() - start):.1f} ms")
    start = time.perf_counter()
    bootstrap_ci(pred, mos, resamples=1000)
    print(f"bootstrap_ci, {args.pairs} pairs, 1000 resamples: {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
