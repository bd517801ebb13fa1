"""``apps/score.py`` and ``tooliqa_trainer.score_images`` on the tiny kit: path<TAB>score per image with its tool
calls, folders expanded, and the common mistakes as one-line errors (issue 15 item 4)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--engine.device", "cpu", "--engine.dtype", "float32", "--protocol.structured", "true"]
ARGS += ["--sampling.temperature", "1.0", "--sampling.seed", "0", "--sampling.max_new_tokens", "320"]


def _score_app():
    spec = importlib.util.spec_from_file_location("score_app", ROOT / "apps" / "score.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    for name in ("a.png", "nested/b.jpg"):
        pixels = torch.randint(0, 256, (64, 80, 3), dtype=torch.uint8, generator=generator).numpy()
        Image.fromarray(pixels).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_score_prints_path_tab_score_and_tool_calls(tiny_model_dir, images, capsys):
    torch.set_num_threads(1)
    _score_app().main(["--ckpt", str(tiny_model_dir), *ARGS, str(images)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(images / "a.png"), str(images / "nested" / "b.jpg")]
    for line in lines:
        path, score, calls = line.split("\t")
        assert 1.0 <= float(score) <= 5.0, line  # structured decoding always answers in range
        assert calls == "no tools" or "magnifier" in calls or "gamma_corrector" in calls


def test_score_images_returns_scores_and_trajectories(tiny_model_dir, images):
    from tooliqa_agent import EngineConfig, ProtocolConfig, SamplingConfig
    from tooliqa_trainer import ScoreJob, score_images

    job = ScoreJob(
        protocol=ProtocolConfig(structured=True),
        sampling=SamplingConfig(temperature=1.0, seed=0, max_new_tokens=320),
        engine=EngineConfig(device="cpu", dtype="float32"),
    )
    results = score_images([images / "a.png"], ckpt=str(tiny_model_dir), job=job)
    (result,) = results
    assert result.path == images / "a.png" and result.score == result.assessment.score
    kinds = [turn.kind for turn in result.assessment.turns]
    assert kinds[0] == "rubric" and len(kinds) >= 2 and result.score is not None  # the whole conversation is kept


def test_score_mistakes_are_one_line_errors(tmp_path):
    from tooliqa_trainer import score_images
    from tooliqa_trainer.errors import UsageError

    with pytest.raises(UsageError, match="nope.png: no such file or folder"):
        score_images([tmp_path / "nope.png"], ckpt=str(tmp_path))
    with pytest.raises(UsageError, match="no image files"):
        score_images([tmp_path], ckpt=str(tmp_path))
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(UsageError, match="--ckpt /no/such/model: no such folder"):
        score_images([tmp_path / "x.png"], ckpt="/no/such/model")
    with pytest.raises(UsageError, match="--ckpt nobody/no-such-model: could not load it"):
        score_images([tmp_path / "x.png"], ckpt="nobody/no-such-model")  # HF_HUB_OFFLINE=1 in tests


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (["--help"], 0, "python apps/score.py --ckpt guanq/Tool-IQA-8B"),
        (["--ckpt", "x", "--sampling.temprature", "1", "a.png"], 2, "did you mean --sampling.temperature"),
        (["--ckp", "x", "a.png"], 2, "unknown option --ckp"),
    ],
)
def test_score_help_and_argument_errors_answer_within_3_s(args, code, expected):
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "apps/score.py", *args], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    assert done.returncode == code and expected in done.stdout + done.stderr, done.stderr
    assert seconds <= 3.0, f"{args}: {seconds:.1f} s"
