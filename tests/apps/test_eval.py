"""``apps/eval.py`` end to end on the tiny kit: the synthetic set and real BIQ2021 images, resumption, and the
regression check — a seeded tiny checkpoint on a fixed synthetic set gives exactly the SRCC/PLCC recorded here, so any
behaviour change anywhere in the pipeline (tokenizer, protocol, engine, tools, metrics) is noticed."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
from conftest import shared_path

ROOT = Path(__file__).resolve().parents[2]
REGRESSION = Path(__file__).with_name("eval_regression.json")


def _eval_app():
    spec = importlib.util.spec_from_file_location("eval_app", ROOT / "apps" / "eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _args(ckpt: Path, out: Path, data: list[str], limit: int, *extra: str) -> list[str]:
    return [
        "--ckpt", str(ckpt), "--out", str(out), "--data", *data,
        "--engine.dtype", "float32", "--engine.device", "cpu",
        "--protocol.structured", "true", "--sampling.max_new_tokens", "320",
        "--sampling.temperature", "1.0", "--sampling.seed", "0",  # seeded sampling: varied scores, same every run
        "--eval.limit", str(limit), "--eval.progress", "false", "--eval.report_samples", "2",
        *extra,
    ]  # fmt: skip


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: the recorded values must not depend on the machine's core count, and the tiny model's
    steps are too small to split (two threads were ~10× slower per step on a busy 2-core machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def synthetic_set(tmp_path_factory) -> Path:
    from tooliqa_data import make_synthetic_set

    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic_set(root, n_references=1, seed=0)
    return root


def test_eval_regression_and_resume(tiny_model_dir, synthetic_set, tmp_path, capsys):
    app = _eval_app()
    out = tmp_path / "eval"
    args = _args(tiny_model_dir, out, [f"synthetic={synthetic_set}:{synthetic_set / 'manifest.csv'}"], 10)
    app.main(args)
    metrics = json.loads((out / "metrics.json").read_text())["datasets"]["synthetic"]
    assert metrics["n_rows"] == 10 and metrics["n_parse_failures"] == 0, "structured decoding must always parse"
    expected = json.loads(REGRESSION.read_text())["synthetic"]  # "_how" there says how the values were recorded
    measured = {key: metrics["metrics"][key] for key in expected}
    assert measured == pytest.approx(expected, abs=1e-6), f"pipeline behaviour changed: {measured} != {expected}"
    for name in ("predictions.csv", "trajectories.jsonl", "table.md", "tools.md", "report.html", "run.json"):
        assert (out / name).is_file(), name
    assert "synthetic" in capsys.readouterr().out

    app.main(args)  # resumed: nothing left to assess, identical numbers
    assert "0 assessed, 10 already done" in capsys.readouterr().out
    again = json.loads((out / "metrics.json").read_text())["datasets"]["synthetic"]["metrics"]
    assert {key: again[key] for key in expected} == measured
    with open(out / "predictions.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 10


def test_eval_on_real_biq2021_images(tiny_model_dir, tmp_path):
    biq = shared_path("data", "biq2021")
    app = _eval_app()
    out = tmp_path / "biq"
    app.main(_args(tiny_model_dir, out, [f"biq2021={biq}"], 20, "--protocol.tools", "none"))
    with open(out / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 20
    assert all(row["status"] == "ok" and 1.0 <= float(row["score"]) <= 5.0 for row in rows)
    assert all(row["n_tool_calls"] == "0" for row in rows), "tools none must never call a tool"
    metrics = json.loads((out / "metrics.json").read_text())["datasets"]["BIQ2021"]
    assert metrics["n_scored"] == 20 and metrics["labeled"]


def test_eval_rejects_a_bad_dataset_spec(tiny_model_dir, tmp_path, capsys):
    app = _eval_app()
    with pytest.raises(SystemExit) as info:  # an operator error: one line on stderr, exit 2, no traceback
        app.main(_args(tiny_model_dir, tmp_path / "x", ["no-equals-sign"], 1))
    assert info.value.code == 2 and "--data no-equals-sign" in capsys.readouterr().err


@pytest.mark.parametrize("config", sorted((ROOT / "configs" / "eval").glob("*.yaml")), ids=lambda p: p.name)
def test_eval_configs_parse(config):
    from tooliqa_trainer.evaluation import EvalJob

    parser = _eval_app().build_parser()
    options = parser.instantiate(parser.parse_args(["--config", str(config), "--ckpt", "any"])).as_dict()
    options.pop("config")
    job = EvalJob(**{**options, "data": tuple(options["data"])})
    assert job.data and all("=" in spec for spec in job.data)


def test_demo_eval_uses_the_demos_protocol():
    """configs/eval/demo.yaml re-scores the demo's export as its validation did: the same protocol, readout,
    samples and sampling, on the held-out part of the same set."""
    import yaml

    train = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    evaluation = yaml.safe_load((ROOT / "configs" / "eval" / "demo.yaml").read_text())
    model = train["model"]
    assert evaluation["protocol"] == model["rollout"]["protocol"]
    validation = model["validation"]
    assert evaluation["readout"] == validation["readout"] and evaluation["samples"] == validation["samples"]
    assert evaluation["sampling"] == validation["sampling"]
    assert evaluation["engine"]["canonical_forced_text"] == model["rollout"]["engine"]["canonical_forced_text"]
    held_out = f"{train['data']['hidden_evidence']['out_dir']}/held_out"
    assert evaluation["data"] == [f"hidden_evidence={held_out}:{held_out}/manifest.csv"]
    assert evaluation["ckpt"] == f"{train['trainer']['default_root_dir']}/hf"
