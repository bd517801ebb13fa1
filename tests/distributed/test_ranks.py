"""Two real ranks on the CPU (gloo), started the way a multi-node launcher starts them (torchrun's environment, two
"nodes" of one process each, no Lightning spawning), against the same run on one rank with the whole batch: rewards
ranked over the global batch, advantages, weights after every step, disjoint data shards, resume, validation exactly
once, rank-0 checkpoints, export and logs — under DDP, DeepSpeed ZeRO-2 and (equivalence of one step) ZeRO-3.

One launch runs the three strategies in turn in the same two processes (``import lightning`` costs ~15 s a process);
the one-rank reference runs in this process meanwhile. DDP goes first and brings up the process group, which the
DeepSpeed runs reuse: DeepSpeed's own CPU start-up (its shared-memory all-reduce) hangs when two "nodes" share a
host, which only this test's layout does. Marked ``ranks``: ``pytest -m ranks`` runs them alone, ``-m "not ranks"``
skips them. The workers start first and import (~30 s: lightning pulls in torchmetrics, torchvision, torch._dynamo)
while this process builds the kit and the data; they start when the spec file appears. Measured alone on the idle
2-core machine: 55–71 s (`pytest -m ranks tests/distributed`; 88–135 s before the early launch)."""

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
if importlib.util.find_spec("deepspeed") is None:  # found, not imported: only the workers need it (~5 s an import)
    pytest.skip("deepspeed is in the dev group; install it with `uv sync`", allow_module_level=True)

WORKER = Path(__file__).with_name("worker.py")
ROOT = Path(__file__).resolve().parents[2]
GLOBAL_BATCH, VAL_ITEMS, WORLD = 4, 5, 2  # 5 held-out images: not a multiple of the 2 ranks
RUNS = [
    {"name": "ddp", "strategy": "ddp", "steps": 2, "resume_from": 1},
    {"name": "zero2", "strategy": "deepspeed2", "steps": 2, "resume_from": 1},
    {"name": "zero3", "strategy": "deepspeed3", "steps": 1, "files": False},
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(spec_file: Path, world: int, nodes: int) -> list[subprocess.Popen]:
    """Start ``world`` worker processes with the environment torchrun (or a SLURM / multi-node wrapper) gives each:
    global, local and group (node) ranks, master address and port. They import while the caller builds the kit and
    the data, and start when :func:`release` writes ``spec_file``."""
    per_node = world // nodes
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
        command = [sys.executable, str(WORKER), str(spec_file)]
        processes.append(
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        )
    return processes


def release(spec_file: Path, spec: dict) -> None:
    """Hand the launched workers their spec (renamed into place: a worker never reads half a file)."""
    partial = spec_file.with_suffix(".partial")
    partial.write_text(json.dumps(spec))
    partial.replace(spec_file)


def wait(processes: list[subprocess.Popen], timeout: float = 600) -> list[str]:
    """Each rank's output; fails with the output of a rank that failed."""
    try:
        outputs = [process.communicate(timeout=timeout)[0] for process in processes]
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


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory) -> dict:
    """The 2-rank launch (2 nodes × 1 process; every run of ``RUNS`` in turn) and, while it runs, the one-rank
    reference in this process. Returns the output folders and each rank's output split by run."""
    two = tmp_path_factory.mktemp("two-ranks")
    spec_file = two / "spec.json"
    processes = launch(spec_file, world=WORLD, nodes=2)  # first: their imports overlap the kit's build
    try:
        tiny_model_dir, data_root = (request.getfixturevalue(name) for name in ("tiny_model_dir", "data_root"))
        base = {"kit": str(tiny_model_dir), "data": str(data_root), "val_items": VAL_ITEMS}
        release(spec_file, {**base, "out": str(two), "devices": 1, "num_nodes": 2, "batch_size": GLOBAL_BATCH // WORLD,
                            "runs": RUNS, "vllm": True})  # fmt: skip
        sys.path.insert(0, str(WORKER.parent))
        from worker import main
    except BaseException:
        for process in processes:
            process.kill()
        raise
    finally:
        if str(WORKER.parent) in sys.path:
            sys.path.remove(str(WORKER.parent))
    one = tmp_path_factory.mktemp("one-rank")
    threads = torch.get_num_threads()
    try:
        main({**base, "out": str(one), "devices": 1, "num_nodes": 1, "batch_size": GLOBAL_BATCH,
              "runs": [{"name": "one", "strategy": "auto", "steps": 2}]})  # fmt: skip
    finally:
        torch.set_num_threads(threads)
        outputs = wait(processes)
    by_run = [dict(part.split("\n", 1) for part in output.split("[worker] run ")[1:]) for output in outputs]
    return {"one": one / "one", "two": two, "outputs": by_run}


def _weights(out: Path, phase: str, step: int, rank: int) -> dict[str, torch.Tensor]:
    return torch.load(out / f"weights_{phase}_step{step}_rank{rank}.pt")


def _record(out: Path, rank: int = 0) -> dict:
    return json.loads((out / f"rank{rank}.json").read_text())


def _check_against_one_rank(one: Path, out: Path, steps: int, world: int = WORLD) -> list[dict]:
    """Per step: disjoint shards forming the global batch, each rank's rewards/advantages equal to its rows of the
    one-rank run, every rank's weights equal to the one-rank weights."""
    ranks = [_record(out, r) for r in range(world)]
    reference = _record(one)["steps"]
    b = GLOBAL_BATCH // world
    for step in range(steps):
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
        single = _weights(one, "first", step + 1, 0)
        for r in range(world):
            weights = _weights(out, "first", step + 1, r)
            for name, tensor in single.items():
                torch.testing.assert_close(weights[name], tensor, rtol=1e-5, atol=1e-6, msg=f"{name} rank {r}")
    return ranks


def _check_resume(out: Path, ranks: list[dict], steps: int, world: int = WORLD) -> None:
    """Resumed from step 1: the same images per rank, the same engine counters and generator states per rank, the
    same final weights."""
    for r, rank in enumerate(ranks):
        assert rank["resumed_start_rng"] == rank["steps"][0]["rng"], f"rank {r} resumed with another RNG state"
        for key in ("images", "seed_offset"):  # the engine's per-rank counter must come back for each rank
            assert [s[key] for s in rank["resumed_steps"]] == [s[key] for s in rank["steps"][1:]], (r, key)
        final, resumed = _weights(out, "first", steps, r), _weights(out, "resumed", steps, r)
        assert all(torch.equal(final[name], resumed[name]) for name in final), f"rank {r} resumed differently"
    assert len({rank["steps"][0]["seed_offset"] for rank in ranks}) == world, "ranks serve different request counts"
    assert len({rank["steps"][0]["rng"] for rank in ranks}) == world, "ranks' generators must differ to tell them apart"


def _check_validation(one: Path, ranks: list[dict], outputs: list[str]) -> None:
    """Every held-out image scored once, on one rank; the metrics of the gathered rows are the one-rank metrics; the
    summary line printed once."""
    seen = [image for rank in ranks for image in rank["val_items"]]
    assert sorted(seen) == sorted(_record(one)["val_items"]) and len(seen) == len(set(seen)) == VAL_ITEMS
    want = _record(one)["held_out"]
    for rank in ranks:
        assert rank["held_out_rows"] == VAL_ITEMS
        assert [(h["n"], h["step"]) for h in rank["held_out"]] == [(h["n"], h["step"]) for h in want]
        assert [h["srcc"] for h in rank["held_out"]] == pytest.approx([h["srcc"] for h in want])
        assert [h["plcc"] for h in rank["held_out"]] == pytest.approx([h["plcc"] for h in want])
    assert sum(output.count("[held-out] step") for output in outputs) == len(want)


def _check_rank_zero_files(one: Path, out: Path, steps: int, data_root: Path, sharded_checkpoints: bool) -> None:
    """One checkpoint per step; one metrics log whose train metrics are the global batch's; an export that
    ``apps/eval.py`` loads and that holds the trained weights."""
    checkpoints = sorted(path.name for path in (out / "ckpt").iterdir())
    assert checkpoints == [f"epoch=0-step={s}.ckpt" for s in range(1, steps + 1)]
    if not sharded_checkpoints:
        assert all(path.is_file() for path in (out / "ckpt").iterdir())
    rows = _metrics(out)
    want = _metrics(one)
    assert len(rows) == len(want) == steps, "one row per step: rank 0 writes the log alone"
    for got, expected in zip(rows, want):
        for key in ("train/reward/total", "train/score_mean", "train/tool_calls/successful", "train/loss"):
            assert float(got[key]) == pytest.approx(float(expected[key]), rel=1e-5), key
    final = _weights(out, "first", steps, 0)
    import transformers

    exported = transformers.AutoModelForImageTextToText.from_pretrained(out / "hf", dtype=torch.float32)
    assert all(torch.equal(tensor, final[name]) for name, tensor in exported.named_parameters())
    spec = importlib.util.spec_from_file_location("eval_app", ROOT / "apps" / "eval.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    held_out = data_root / "held_out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        app.main(
            ["--ckpt", str(out / "hf"), "--out", str(out / "eval"), "--data", f"held_out={held_out}:{held_out / 'manifest.csv'}",
             "--engine.dtype", "float32", "--engine.device", "cpu", "--sampling.max_new_tokens", "8",
             "--eval.limit", "2", "--eval.progress", "false", "--eval.plots", "false"]
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert json.loads((out / "eval" / "metrics.json").read_text())["datasets"]["held_out"]["n_rows"] == 2


def _metrics(out: Path) -> list[dict]:
    with open(out / "logs" / "first" / "metrics.csv") as f:
        return [row for row in csv.DictReader(f) if row.get("train/reward/total")]


def test_ddp_two_nodes_equal_one_rank(runs, data_root):
    out, steps = runs["two"] / "ddp", RUNS[0]["steps"]
    ranks = _check_against_one_rank(runs["one"], out, steps)
    _check_resume(out, ranks, steps)
    _check_validation(runs["one"], ranks, [output["ddp"] for output in runs["outputs"]])
    _check_rank_zero_files(runs["one"], out, steps, data_root, sharded_checkpoints=False)


def test_deepspeed_zero2_equals_one_rank(runs, data_root):
    out, steps = runs["two"] / "zero2", RUNS[1]["steps"]
    ranks = _check_against_one_rank(runs["one"], out, steps)
    _check_resume(out, ranks, steps)
    _check_validation(runs["one"], ranks, [output["zero2"] for output in runs["outputs"]])
    _check_rank_zero_files(runs["one"], out, steps, data_root, sharded_checkpoints=True)


def test_deepspeed_zero3_one_step_equals_one_rank(runs):
    """Partitioned parameters on DeepSpeed's CPU accelerator: the step's rewards, advantages and (gathered) weights."""
    _check_against_one_rank(runs["one"], runs["two"] / "zero3", RUNS[2]["steps"])


def test_vllm_engine_settings_on_every_rank(runs):
    """Each rank's vllm engine (fake ``LLM``), built where Lightning's own launcher leaves no ``RANK``: the
    ``external_launcher`` variables of its own rank, its own engine seed (TP 1: one engine per rank), request seeds
    no other rank uses, and a tensor-parallel engine refused."""
    settings = [json.loads((runs["two"] / f"vllm{rank}.json").read_text()) for rank in range(WORLD)]
    for rank, got in enumerate(settings):
        assert got["env"] == {"RANK": str(rank), "WORLD_SIZE": str(WORLD), "LOCAL_RANK": "0",
                              "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": got["env"]["MASTER_PORT"]}  # fmt: skip
        assert got["engine_seed"] == rank and got["backend"] == "external_launcher"
        assert "tensor_parallel_size is 2" in got["tensor_parallel_refused"]
    seeds = [seed for got in settings for seed in got["request_seeds"]]
    assert len(set(seeds)) == len(seeds) == 2 * WORLD, "two ranks must not sample with the same seeds"
    assert len({seed & 0xFFFF_FFFF for seed in seeds}) == len(seeds)  # what a CPU torch.Generator keeps
