"""Issue 16.6 / 15.5 / 16.7 / 15.2: every operator error of ``apps/eval.py`` is one line naming the flag (or file)
and the fix, exit status 2, found before any model loads; damaged checkpoints are refused naming the file; a folder
refuses to resume over other weights, naming the tensors that differ."""

from __future__ import annotations

import importlib.util
import json
import shutil
import struct
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _app():
    spec = importlib.util.spec_from_file_location("eval_app", ROOT / "apps" / "eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def no_model(monkeypatch):
    """Any attempt to build an engine fails the test: these errors must come first."""
    import tooliqa_agent

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the operator error was reported")

    monkeypatch.setattr(tooliqa_agent, "make_engine", refuse)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    for i in range(3):
        Image.new("RGB", (48, 40), (40 * i, 90, 200)).save(folder / f"{i}.png")
    (folder / "labels.csv").write_text("image,mos\n0.png,1\n1.png,2\n2.png,3\n")
    return folder


def _fails(capsys, args: list[str], *fragments: str) -> str:
    start = time.perf_counter()
    with pytest.raises(SystemExit) as info:
        _app().main(args)
    assert info.value.code == 2
    stderr = capsys.readouterr().err
    err = stderr.strip().splitlines()[-1]  # above it, at most a loading progress bar
    assert err.startswith("eval.py: error: ") and "Traceback" not in stderr, stderr
    for fragment in fragments:
        assert fragment in err, err
    assert time.perf_counter() - start < 20, "found late"
    return err


def _base(ckpt, out, data) -> list[str]:
    return ["--ckpt", str(ckpt), "--out", str(out), "--data", *data, "--engine.device", "cpu"]


def test_bad_out(tiny_model_dir, images, tmp_path, capsys, no_model):
    data = [f"photos={images}:{images / 'labels.csv'}"]
    (tmp_path / "a_file").write_text("x")
    _fails(capsys, _base(tiny_model_dir, tmp_path / "a_file", data), "--out", "exists and is not a folder")
    _fails(capsys, _base(tiny_model_dir, tmp_path / "a_file" / "sub", data), "--out", "cannot write there")
    _fails(capsys, _base(tiny_model_dir, "/proc/tooliqa-out", data), "--out /proc/tooliqa-out", "pass a writable")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: --engine.device cuda is valid here")
def test_cuda_without_cuda(tiny_model_dir, images, tmp_path, capsys, no_model):
    args = [*_base(tiny_model_dir, tmp_path / "o", [f"photos={images}"]), "--engine.device", "cuda"]
    _fails(capsys, args, "--engine.device cuda: no CUDA device", "pass --engine.device cpu")


def test_bad_ckpt(images, tmp_path, capsys, no_model):
    data = [f"photos={images}"]
    _fails(capsys, _base(tmp_path / "nope", tmp_path / "o", data), "--ckpt", "no such folder", "runs/demo/hf")
    _fails(capsys, _base("./runs/missing/hf", tmp_path / "o", data), "--ckpt ./runs/missing/hf: no such folder")
    (tmp_path / "empty").mkdir()
    _fails(capsys, _base(tmp_path / "empty", tmp_path / "o", data), "no config.json")


def test_offline_hub_id_is_refused_at_once(images, tmp_path, capsys, no_model, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    args = _base("someone/not-a-cached-model", tmp_path / "o", [f"photos={images}"])
    _fails(capsys, args, "--ckpt someone/not-a-cached-model: no such folder, and as a hub id", "HF_HUB_OFFLINE")


def test_unreachable_hub_is_detected_quickly(images, tmp_path, capsys, no_model, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1:9")  # the discard port: nothing listens
    for proxy in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    args = _base("someone/not-a-cached-model", tmp_path / "o", [f"photos={images}"])
    start = time.perf_counter()
    _fails(capsys, args, "the hub cannot be reached (no network)")
    assert time.perf_counter() - start < 10, "an unreachable hub must be found in seconds, not after 162 s"


def test_bad_data(tiny_model_dir, images, tmp_path, capsys, no_model):
    out = tmp_path / "o"
    _fails(capsys, _base(tiny_model_dir, out, ["no-equals-sign"]), "--data no-equals-sign", "NAME=ROOT")
    _fails(capsys, _base(tiny_model_dir, out, [f"biq2012={images}"]), "'biq2012': did you mean 'biq2021'?")
    twice = [f"photos={images}:{images / 'labels.csv'}", f"photos={images}"]
    _fails(capsys, _base(tiny_model_dir, out, twice), "--data: dataset 'photos' is given 2 times")
    _fails(capsys, _base(tiny_model_dir, out, [f"kadid10k/dev={images}"]), "--data kadid10k/dev=", "no split 'dev'")
    (images / "bad.csv").write_text("image,mos\n0.png,0_5\n")
    _fails(capsys, _base(tiny_model_dir, out, [f"photos={images}:{images / 'bad.csv'}"]), "bad.csv:2: MOS '0_5'")


def _copy_kit(tiny_model_dir, tmp_path) -> tuple[Path, Path]:
    kit = tmp_path / "kit"
    shutil.copytree(tiny_model_dir, kit)
    (weights,) = sorted(kit.glob("*.safetensors"))
    return kit, weights


def test_damaged_checkpoints_name_the_file(tiny_model_dir, images, tmp_path, capsys, no_model):
    kit, weights = _copy_kit(tiny_model_dir, tmp_path)
    data = weights.read_bytes()
    for damaged, message in ((b"", "0 bytes"), (data[:4], "too short"), (data[: len(data) // 2], "cut short")):
        weights.write_bytes(damaged)
        _fails(capsys, _base(kit, tmp_path / "o", [f"photos={images}"]), str(weights), message)


def _nan_into(weights: Path) -> str:
    """Overwrite the first element of the first float32 tensor with a NaN, in place; returns its name."""
    data = bytearray(weights.read_bytes())
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    name, entry = next((k, v) for k, v in sorted(header.items()) if k != "__metadata__" and v["dtype"] == "F32")
    start = 8 + length + entry["data_offsets"][0]
    data[start : start + 4] = struct.pack("<f", float("nan"))
    weights.write_bytes(bytes(data))
    return name


def test_non_finite_weights_are_refused_at_load(tiny_model_dir, images, tmp_path, capsys):
    kit, weights = _copy_kit(tiny_model_dir, tmp_path)
    name = _nan_into(weights)
    _fails(capsys, _base(kit, tmp_path / "o", [f"photos={images}"]), f"{weights}: tensor {name!r} holds NaN")


def test_resume_over_other_weights_names_the_tensors(tiny_model_dir, images, tmp_path, capsys):
    from tooliqa_trainer.weights import fingerprint

    kit, weights = _copy_kit(tiny_model_dir, tmp_path)
    out = tmp_path / "o"
    args = [*_base(kit, out, [f"photos={images}:{images / 'labels.csv'}"]), "--eval.progress", "false"]
    args += ["--sampling.max_new_tokens", "8", "--eval.report_samples", "0", "--protocol.tools", "none"]
    _app().main(args)
    recorded = json.loads((out / "run.json").read_text())["identity"]["weights"]
    assert recorded == fingerprint(kit) and len(recorded) > 10
    name = _nan_into(weights)  # any change of bytes: here one element of one tensor
    err = _fails(capsys, args, f"{out} holds predictions of another run: weights.{name}", "pass another --out")
    assert err.count("weights.") == 1, "only the changed tensor is named"
