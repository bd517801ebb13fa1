"""apps/train.py as a user runs it: fit, resume with ``--ckpt_path last``, rerun from the run's own config.yaml, the
mistakes it refuses in one line, and a front that answers ``--help`` and typos before Lightning loads (issue 15)."""

from __future__ import annotations

import csv
import difflib
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from .test_configs import CONFIGS, ROOT, STANDALONE, _cli, _train_app

DEBUG = ["--config", str(CONFIGS / "debug_cpu.yaml"), "--trainer.val_check_interval", "1"]


def _fit(root: Path, *extra: str):
    sys.argv = ["train.py"]  # the CLI must not see pytest's own arguments
    return _train_app().main(["fit", *DEBUG, "--trainer.default_root_dir", str(root), *extra])


def _step(checkpoint: Path) -> int:
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["global_step"]


def test_fit_resumes_with_ckpt_path_last_and_reruns_from_its_config(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the debug config builds its tiny kit and data under ./runs
    run = tmp_path / "run"
    cli = _fit(run, "--trainer.max_steps", "2", "--trainer.num_sanity_val_steps", "-1")
    last = run / "checkpoints" / "last.ckpt"  # a stable folder, not the logger's version_N
    assert _step(last) == 2
    metrics = list(csv.DictReader((tmp_path / "runs/debug/csv/version_0/metrics.csv").open()))
    # the step-0 held-out pass is logged, and each pass at the step the console prints (not one less)
    assert [int(row["step"]) for row in metrics if row.get("val/srcc")] == [0, 1, 2]
    with Image.open(run / "curves.png") as curves:  # every run folder: SRCC/PLCC, ρ and the reward parts
        assert curves.size[0] == 3 * 4.5 * 110
    assert cli.trainer.progress_bar_callback.total_train_batches == 2  # the bar counts steps of max_steps

    with pytest.raises(SystemExit, match="already holds a run"):  # a fresh fit would overwrite it
        _fit(run, "--trainer.max_steps", "2")

    _fit(run, "--ckpt_path", "last", "--trainer.max_steps", "3")
    assert _step(last) == 3
    callbacks = torch.load(last, map_location="cpu", weights_only=True)["callbacks"]
    report = next(state for key, state in callbacks.items() if key.startswith("ToolReport"))
    assert [point[0] for point in report["held_out"]] == [0, 1, 2, 3]  # the resumed run's curves start at step 0

    with pytest.raises(SystemExit, match=r"model\.grpo\.loss: 'gspo' in the checkpoint, 'grpo' now"):
        _fit(run, "--ckpt_path", "last", "--trainer.max_steps", "4", "--model.grpo.loss", "grpo")

    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["ckpt_path"] is None and saved["trainer"]["max_steps"] == 3
    sys.argv = ["train.py"]
    again = tmp_path / "again"
    _train_app().main(["fit", "--config", str(run / "config.yaml"), "--trainer.default_root_dir", str(again)])
    assert _step(again / "checkpoints" / "last.ckpt") == 3


@pytest.mark.parametrize("configs", [(p,) for p in STANDALONE], ids=lambda c: c[0].name)
def test_every_shipped_config_saves_a_config_that_parses_back(configs, monkeypatch, tmp_path):
    """What SaveRunConfig writes (and --ckpt_path / --config <run>/config.yaml read back) is the same run: the
    rubric's lines used to be written as "Unable to serialize instance RubricAttribute(...)". The overlays add no
    types of their own: the stand-alone configs cover every field."""
    from tooliqa_trainer.checkpoint_state import plain as _plain

    monkeypatch.chdir(tmp_path)
    cli = _cli(*configs)
    saved = tmp_path / "config.yaml"
    cli.parser.save(cli.config, saved, skip_none=False)
    again = _cli(saved)
    assert _plain(dict(again.model.hparams)) == _plain(dict(cli.model.hparams))


def test_a_missing_data_folder_is_one_line_naming_its_key(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    spec = '[{"name": "csv", "root": "/data/nope"}]'
    with pytest.raises(SystemExit, match=r"data\.train\[0\]\.root: /data/nope: no such folder"):
        _fit(tmp_path / "run", "--data.synthetic", "null", "--data.train", spec, "--data.val", spec)


def test_resume_mistakes_are_one_line_errors(tmp_path):
    from tooliqa_trainer.cli import check_resume
    from tooliqa_trainer.errors import UsageError

    with pytest.raises(UsageError, match="no .*last.ckpt to resume"):
        check_resume(tmp_path, "last", model=None)
    with pytest.raises(UsageError, match="nope.ckpt: no such file"):
        check_resume(tmp_path, "nope.ckpt", model=None)
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    with pytest.raises(UsageError, match="already holds a run .*hf"):  # another run's export is not overwritten
        check_resume(tmp_path, None, model=None)


@pytest.mark.parametrize("app", ["train", "score", "eval"])
def test_front_snapshot_is_the_real_parser(app):
    """cli_<app>.json (what --help prints and which options exist) equals what the real parser says; after a change
    to a config field or an app's docstring: python -m tooliqa_trainer.cli_front --write"""
    from tooliqa_trainer.cli_front import app_description, snapshot, snapshot_path

    live = snapshot(app, app_description(ROOT / "apps" / f"{app}.py"))
    stored = json.loads(snapshot_path(app).read_text())
    assert live["options"] == stored["options"], "stale snapshot: python -m tooliqa_trainer.cli_front --write"
    for name, text in live["help"].items():
        # the classes a --trainer.callbacks / logger / … help lists are those imported so far (tests add theirs)
        text = re.sub(r"known subclasses:[^)]*\)", "known subclasses: …)", text)
        stored["help"][name] = re.sub(r"known subclasses:[^)]*\)", "known subclasses: …)", stored["help"][name])
        diff = difflib.unified_diff(stored["help"].get(name, "").splitlines(), text.splitlines(), lineterm="", n=0)
        assert text == stored["help"].get(name), f"stale snapshot ({name or 'main'} help):\n" + "\n".join(
            list(diff)[:12]
        )


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (["--help"], 0, "python apps/train.py fit --config configs/demo.yaml"),
        (["fit", "--help"], 0, "--trainer.max_steps"),
        (["fit", "--trainer.max_step", "4"], 2, "unknown option --trainer.max_step (did you mean --trainer.max_steps"),
        (["test"], 2, "unknown subcommand 'test'; choose one of: fit, validate"),
        (["fit", "--config", "configs/nope.yaml"], 2, "--config configs/nope.yaml: no such file"),
    ],
)
def test_help_and_argument_errors_answer_within_3_s(args, code, expected):
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "apps/train.py", *args], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    assert done.returncode == code, done.stderr
    assert expected in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert seconds <= 3.0, f"{args}: {seconds:.1f} s"


def test_print_config_is_yaml_only_and_silent():
    """No DeepSpeed "Setting accelerator to CPU" line in front of the YAML, no JsonargparseWarning (the rubric's
    lines serialize), and the output parses back as the config."""
    done = subprocess.run(
        [sys.executable, "apps/train.py", "fit", "--config", "configs/tooliqa.yaml", "--print_config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("# lightning.pytorch=="), done.stdout[:200]
    assert "Warning" not in done.stderr, done.stderr
    config = yaml.safe_load(done.stdout)
    rubric = config["model"]["rollout"]["protocol"]["grammar"]["rubric"]
    assert rubric[0] == {"name": "Sharpness", "levels": ["Low", "Medium", "High"]}


def test_eval_front_answers_before_torch(capsys):
    """apps/eval.py --help and an unknown option are answered from the snapshot (issue 15 item 5, eval's half)."""
    from tooliqa_trainer.cli_front import check

    with pytest.raises(SystemExit) as exit_info:
        check(["--protocol.tool", "none"], "eval")
    assert exit_info.value.code == 2
    assert "--protocol.tools" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        check(["--help"], "eval")
    assert exit_info.value.code == 0 and "--ckpt" in capsys.readouterr().out


def test_front_leaves_nested_keys_of_optional_dataclasses_to_the_parser():
    """``--data.hidden_evidence.out_dir`` (a field of an optional dataclass, whose snapshot lists only ``.help``)
    passes the front; a misspelled top-level key is still refused."""
    from tooliqa_trainer.cli_front import check

    check(["fit", "--data.hidden_evidence.out_dir", "runs/x", "--model.policy.tiny.max_pixels", "4096"], "train")
    with pytest.raises(SystemExit):
        check(["fit", "--data.hiden_evidence.out_dir", "runs/x"], "train")
