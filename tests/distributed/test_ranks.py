"""Two real ranks on the CPU (gloo), started the way a multi-node launcher starts them (torchrun's environment, no
Lightning spawning), against the same run on one rank with the whole batch: rewards ranked over the global batch,
advantages, weights after every step, disjoint data shards, resume, validation exactly once, rank-0 checkpoints,
export and logs. Under DDP (launched as 2 nodes × 1 process) and DeepSpeed ZeRO-2 (1 node × 2 processes).

Marked ``ranks``: ``pytest -m ranks`` runs them alone; CI runs them too (≈ 60-90 s on the 2-core machine)."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.ranks

WORKER = Path(__file__).with_name("worker.py")
ROOT = Path(__file__).resolve().parents[2]
STEPS, GLOBAL_BATCH, VAL_ITEMS = 2, 4, 5  # 5 held-out images: not a multiple of the 2 ranks


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(spec: dict, world: int, nodes: int, timeout: float = 240) -> list[str]:
    """Start ``world`` worker processes with the environment torchrun (or a SLURM/multi-node wrapper) gives each:
    ranks, group (node) rank, master address and port; returns each rank's output. Fails with the output of any
    rank that fails."""
    per_node = world // nodes
    spec_file = Path(spec["out"]) / "spec.json"
    spec_file.parent.mkdir(parents=True, exist_ok=True)
    spec_file.write_text(json.dumps(spec))
    port = str(_free_port())
    processes = []
    for rank in range(world):
        env = {
            **os.environ,
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
            "WORLD_SIZE": str(world),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank % per_node),
            "LOCAL_WORLD_SIZE": str(per_node),
            "GROUP_RANK": str(rank // per_node),
            "NODE_RANK": str(rank // per_node),
            "TORCHELASTIC_RUN_ID": "ranks-test",
            "OMP_NUM_THREADS": "1",
        }
        processes.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), str(spec_file)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=timeout)[0])
    finally:
        for process in processes:
            process.kill()
    for rank, (process, output) in enumerate(zip(processes, outputs)):
        assert process.returncode == 0, f"rank {rank} failed:\n{output[-6000:]}"
    return outputs


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from tooliqa_data import make_synthetic_set

    root = tmp_path_factory.mktemp("ranks-data")
    options = dict(size=(64,), distortions=("blur", "noise"), name="synthetic")
    make_synthetic_set(root / "train", 2, 0, **options)
    make_synthetic_set(root / "held_out", 1, 1, **options)
    return root


def _spec(kit, data, out, strategy, world, nodes, resume_from=None) -> dict:
    return {
        "kit": str(kit),
        "data": str(data),
        "out": str(out),
        "strategy": strategy,
        "devices": world // nodes,
        "num_nodes": nodes,
        "batch_size": GLOBAL_BATCH // world,
        "steps": STEPS,
        "val_items": VAL_ITEMS,
        "resume_from": resume_from,
    }


@pytest.fixture(scope="module")
def one_rank(tiny_model_dir, data_root, tmp_path_factory) -> dict:
    """The reference: one process, the whole batch of B images, in this pytest process."""
    sys.path.insert(0, str(WORKER.parent))
    try:
        from worker import run
    finally:
        sys.path.remove(str(WORKER.parent))
    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("one-rank")
    try:
        record = run(_spec(tiny_model_dir, data_root, out, "auto", world=1, nodes=1))
    finally:
        torch.set_num_threads(threads)
    return {"out": out, "record": record}


def _weights(out: Path, phase: str, step: int, rank: int) -> dict[str, torch.Tensor]:
    return torch.load(out / f"weights_{phase}_step{step}_rank{rank}.pt")


def _check_against_one_rank(one_rank: dict, out: Path, world: int) -> list[dict]:
    """Per step: disjoint shards forming the global batch, each rank's rewards/advantages equal to its rows of the
    one-rank run, every rank's weights equal to the one-rank weights."""
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(world)]
    reference = one_rank["record"]["steps"]
    b = GLOBAL_BATCH // world
    for step in range(STEPS):
        want = reference[step]
        shards = [r["steps"][step]["images"] for r in ranks]
        assert [image for shard in shards for image in shard] == want["images"], "shards must form the global batch"
        assert len({image for shard in shards for image in shard}) == GLOBAL_BATCH, "shards must be disjoint"
        for r, rank in enumerate(ranks):
            got = rank["steps"][step]
            assert got["rho"] == pytest.approx(want["rho"]), "ρ must be the global batch's"
            for name in ("rank", "format", "bate", "total"):
                torch.testing.assert_close(torch.tensor(got[name]), torch.tensor(want[name][r * b : (r + 1) * b]))
            g = len(want["advantages"]) // GLOBAL_BATCH
            torch.testing.assert_close(
                torch.tensor(got["advantages"]), torch.tensor(want["advantages"][r * b * g : (r + 1) * b * g])
            )
        assert any(value != 0 for row in want["bate"] for value in row), "BATE must be live in the comparison"
        single = _weights(one_rank["out"], "first", step + 1, 0)
        for r in range(world):
            weights = _weights(out, "first", step + 1, r)
            for name, tensor in single.items():
                torch.testing.assert_close(weights[name], tensor, rtol=1e-5, atol=1e-6, msg=f"{name} rank {r}")
    return ranks


def _check_resume(out: Path, ranks: list[dict], world: int) -> None:
    """Resumed from step 1: the same images per rank, the same engine counters per rank, the same final weights."""
    for r, rank in enumerate(ranks):
        for key in ("images", "seed_offset"):  # the engine's per-rank counter must come back for each rank
            assert [s[key] for s in rank["resumed_steps"]] == [s[key] for s in rank["steps"][1:]], (r, key)
        final, resumed = _weights(out, "first", STEPS, r), _weights(out, "resumed", STEPS, r)
        assert all(torch.equal(final[name], resumed[name]) for name in final), f"rank {r} resumed differently"
    assert len({rank["steps"][0]["seed_offset"] for rank in ranks}) == world, "ranks serve different request counts"


def _check_validation(one_rank: dict, ranks: list[dict], outputs: list[str]) -> None:
    """Every held-out image scored once, on one rank; the metrics of the gathered rows are the one-rank metrics; the
    summary line printed once."""
    seen = [image for rank in ranks for image in rank["val_items"]]
    assert sorted(seen) == sorted(one_rank["record"]["val_items"]) and len(seen) == len(set(seen)) == VAL_ITEMS
    want = one_rank["record"]["held_out"]
    for rank in ranks:
        assert rank["held_out_rows"] == VAL_ITEMS
        assert [(h["n"], h["step"]) for h in rank["held_out"]] == [(h["n"], h["step"]) for h in want]
        assert [h["srcc"] for h in rank["held_out"]] == pytest.approx([h["srcc"] for h in want])
        assert [h["plcc"] for h in rank["held_out"]] == pytest.approx([h["plcc"] for h in want])
    assert sum(output.count("[held-out] step") for output in outputs) == len(want)


def _check_rank_zero_files(one_rank: dict, out: Path, sharded_checkpoints: bool) -> None:
    """One checkpoint per step; one metrics log whose train metrics are the global batch's; an export that
    ``apps/eval.py`` loads and that holds the trained weights."""
    checkpoints = sorted(path.name for path in (out / "ckpt").iterdir())
    assert checkpoints == [f"epoch=0-step={s}.ckpt" for s in range(1, STEPS + 1)]
    if not sharded_checkpoints:
        assert all(path.is_file() for path in (out / "ckpt").iterdir())
    rows = _metrics(out)
    want = _metrics(one_rank["out"])
    assert len(rows) == len(want) == STEPS, "one row per step: rank 0 writes the log alone"
    for got, expected in zip(rows, want):
        for key in ("train/reward/total", "train/score_mean", "train/tool_calls/successful", "train/loss"):
            assert float(got[key]) == pytest.approx(float(expected[key]), rel=1e-5), key
    final = _weights(out, "first", STEPS, 0)
    spec = importlib.util.spec_from_file_location("eval_app", ROOT / "apps" / "eval.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    args = app.build_parser().parse_args(["--ckpt", str(out / "hf"), "--engine.dtype", "float32"])
    assert args.ckpt == str(out / "hf")
    import transformers

    exported = transformers.AutoModelForImageTextToText.from_pretrained(out / "hf", dtype=torch.float32)
    assert all(torch.equal(tensor, final[name]) for name, tensor in exported.named_parameters())


def _metrics(out: Path) -> list[dict]:
    with open(out / "logs" / "first" / "metrics.csv") as f:
        return [row for row in csv.DictReader(f) if row.get("train/reward/total")]


def test_ddp_two_nodes_equal_one_rank(tiny_model_dir, data_root, one_rank, tmp_path):
    out = tmp_path / "ddp"
    outputs = launch(_spec(tiny_model_dir, data_root, out, "ddp", world=2, nodes=2, resume_from=1), world=2, nodes=2)
    ranks = _check_against_one_rank(one_rank, out, world=2)
    _check_resume(out, ranks, world=2)
    _check_validation(one_rank, ranks, outputs)
    _check_rank_zero_files(one_rank, out, sharded_checkpoints=False)


def test_deepspeed_zero2_two_processes_equal_one_rank(tiny_model_dir, data_root, one_rank, tmp_path):
    pytest.importorskip("deepspeed", reason="deepspeed is in the dev group; install it with `uv sync`")
    out = tmp_path / "zero2"
    spec = _spec(tiny_model_dir, data_root, out, "deepspeed2", world=2, nodes=1, resume_from=1)
    outputs = launch(spec, world=2, nodes=1)
    ranks = _check_against_one_rank(one_rank, out, world=2)
    _check_resume(out, ranks, world=2)
    _check_validation(one_rank, ranks, outputs)
    _check_rank_zero_files(one_rank, out, sharded_checkpoints=True)
