"""Every YAML under configs/ (except configs/eval/) parses and instantiates with apps/train.py's LightningCLI, without
loading any weights (the model loads in configure_model), and the paper config carries the paper's numbers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
OVERLAYS = sorted((CONFIGS / "ablations").glob("*.yaml")) + sorted((CONFIGS / "variants").glob("*.yaml"))
STANDALONE = sorted(CONFIGS.glob("*.yaml")) + [CONFIGS / "demo" / "single_turn.yaml"]
DEMO_OVERLAYS = sorted(p for p in (CONFIGS / "demo").glob("*.yaml") if p.name != "single_turn.yaml")
# GPU configs are instantiated on CPU: the DeepSpeed strategy itself is checked in test_deepspeed_strategy_from_config.
CPU = ["--trainer.accelerator=cpu", "--trainer.strategy=auto", "--trainer.precision=32-true", "--trainer.devices=1"]


def _train_app():
    spec = importlib.util.spec_from_file_location("tooliqa_train_app", ROOT / "apps" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cli(*configs: Path, extra: tuple[str, ...] = ()):
    import sys

    sys.argv = ["train.py"]  # the CLI must not see pytest's own arguments
    args: list[str] = []  # run=False: no subcommand
    for config in configs:
        args += ["--config", str(config)]
    return _train_app().main(args=[*args, *CPU, *extra], run=False)


def test_every_config_starts_with_its_launch_command():
    for path in STANDALONE + OVERLAYS + DEMO_OVERLAYS:
        head = path.read_text().splitlines()[:4]
        assert head[0].startswith("#"), f"{path} must start with a comment"
        assert any("python apps/train.py fit --config" in line for line in head), f"{path}: no launch command"


@pytest.mark.parametrize("path", STANDALONE, ids=lambda p: p.name)
def test_standalone_config_instantiates(path, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # loggers and checkpoints would write under runs/: keep them out of the repo
    cli = _cli(path)
    model, data = cli.model, cli.datamodule
    assert model.policy is None, "no weights may load before configure_model"
    assert data.steps == cli.trainer.max_steps // model.grpo.inner_updates


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_overlay_parses_on_top_of_the_paper_config(overlay, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    cli = _cli(CONFIGS / "tooliqa.yaml", overlay)
    protocol = cli.model.rollout_config.protocol
    weights = cli.model.reward_config.weights
    expected = {
        "no_tools.yaml": lambda: protocol.tools == "none" and not protocol.rubric and weights.bate == 0.0,
        "magnifier_only.yaml": lambda: protocol.tools == "magnifier" and protocol.rubric,
        "no_bate.yaml": lambda: weights.bate == 0.0 and protocol.tools == "both",
        "no_rubric.yaml": lambda: not protocol.rubric and protocol.tools == "both",
        "lora.yaml": lambda: cli.model.policy_config.lora is not None and cli.model.policy_config.lora.r == 64,
    }
    assert expected[overlay.name]()


def test_demo_runs_the_papers_protocol(monkeypatch, tmp_path):
    """The README's main job is Tool-IQA itself: rubric, both tools, two rounds, rank + format + BATE, GSPO + KL
    schedule, on the hidden-evidence set (issue 12)."""
    monkeypatch.chdir(tmp_path)
    cli = _cli(CONFIGS / "demo.yaml")
    m = cli.model
    protocol, weights = m.rollout_config.protocol, m.reward_config.weights
    assert protocol.tools == "both" and protocol.rubric and protocol.structured and protocol.max_tool_rounds == 2
    assert weights.rank > 0 and weights.format > 0 and weights.bate > 0
    bate = m.reward_config.bate
    assert (bate.target_rate, bate.band_low, bate.band_high, bate.outside_band_factor) == (0.5, 0.35, 0.65, 3.0)
    assert m.grpo.loss == "gspo" and len(m.grpo.kl_schedule) == 2
    assert cli.datamodule.hidden_evidence is not None and cli.datamodule.synthetic is None
    # the kit reads the demo's own prompts and its box menu as one token each (tiny.phrases)
    tiny = m.policy_config.tiny
    assert tiny.protocol_phrases and {protocol.prompts.rubric, protocol.prompts.gate} <= set(tiny.phrases)
    assert {str(list(box)) for box in protocol.grammar.box_choices} <= set(tiny.phrases)
    view = cli.datamodule.hidden_evidence.images.view_side
    assert tiny.max_pixels == view * view  # the set's originals are the model's view


@pytest.mark.parametrize("overlay", DEMO_OVERLAYS, ids=lambda p: p.name)
def test_demo_ablations_change_one_thing(overlay, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    cli = _cli(CONFIGS / "demo.yaml", overlay)
    protocol, weights = cli.model.rollout_config.protocol, cli.model.reward_config.weights
    expected = {
        "no_bate.yaml": lambda: weights.bate == 0.0 and protocol.tools == "both" and protocol.rubric,
        "no_tools.yaml": lambda: protocol.tools == "none" and not protocol.rubric and weights.bate == 0.0,
        "magnifier_only.yaml": lambda: protocol.tools == "magnifier" and weights.bate > 0,
        "gamma_only.yaml": lambda: protocol.tools == "gamma" and weights.bate > 0,
    }
    assert expected[overlay.name]()
    assert cli.trainer.default_root_dir != "runs/demo"  # each ablation writes its own run folder


def test_paper_config_has_the_paper_hyperparameters(monkeypatch, tmp_path):
    import yaml

    monkeypatch.chdir(tmp_path)
    cli = _cli(CONFIGS / "tooliqa.yaml")
    m = cli.model
    assert m.policy_config.path == "Qwen/Qwen3-VL-8B-Instruct"
    assert cli.trainer.max_steps == 680 and cli.datamodule.steps == 680
    assert m.optim.lr == 2e-6 and m.optim.warmup_ratio == 0.05
    assert m.grpo.kl_schedule == ((0, 0.04), (340, 0.06)) and m.grpo.loss == "gspo"
    assert m.rollout_config.sampling.temperature == 0.9 and m.rollout_config.group_size == 4
    assert m.rollout_config.protocol.max_tool_rounds == 2 and m.rollout_config.protocol.tools == "both"
    assert m.rollout_config.engine.name == "vllm"
    devices = yaml.safe_load((CONFIGS / "tooliqa.yaml").read_text())["trainer"]["devices"]  # CPU args override it
    assert cli.datamodule.batch_size * devices == 12 and cli.datamodule.seed == 42  # the paper's 12 images per step
    assert cli.datamodule.train_specs[0].split == "train" and cli.datamodule.train_specs[0].name == "kadid10k"


@pytest.mark.parametrize("config,stage", [(("tooliqa.yaml",), 3), (("tooliqa.yaml", "variants/lora.yaml"), 2)])
def test_deepspeed_strategy_from_config(config, stage):
    pytest.importorskip("deepspeed", reason="deepspeed is the trainer's optional extra (uv sync --extra deepspeed)")
    import yaml
    from jsonargparse import ArgumentParser
    from lightning.pytorch.strategies import DeepSpeedStrategy, Strategy

    strategy_section = None
    for name in config:
        section = yaml.safe_load((CONFIGS / name).read_text())["trainer"].get("strategy")
        strategy_section = section or strategy_section
    parser = ArgumentParser()
    parser.add_argument("--strategy", type=Strategy)
    strategy = parser.instantiate_classes(parser.parse_object({"strategy": strategy_section})).strategy
    assert isinstance(strategy, DeepSpeedStrategy)
    assert strategy.config["zero_optimization"]["stage"] == stage
    assert strategy.config["gradient_clipping"] == 1.0
