"""``apps/train.py``'s LightningCLI: one folder per run, resume checks, and a quiet console.

The run folder is the trainer's ``default_root_dir`` (``runs/demo`` for the demo); everything the run writes is in
it, at fixed names, so it resumes and reruns by name:

* ``checkpoints/last.ckpt`` — resume with ``fit --config … --ckpt_path last`` (or the file's path);
* ``config.yaml`` — the full parsed config; ``fit --config <run>/config.yaml`` reruns the run (into another folder:
  add ``--trainer.default_root_dir``);
* ``hf/`` (``ExportHF``), ``tools.md`` and ``curves.png`` (``ToolReport``), the logger's ``lightning_logs/version_N``.

A fresh ``fit`` into a folder that already holds a run is refused (it would overwrite that run's checkpoint and
export); resuming with settings other than the checkpoint's is refused, naming the differing keys.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from jsonargparse import set_parsing_settings
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from tooliqa_trainer.callbacks import StepProgressBar, ToolReport
from tooliqa_trainer.checkpoint_state import plain
from tooliqa_trainer.cli_front import PROGS
from tooliqa_trainer.cli_help import HelpFormatter
from tooliqa_trainer.datamodule import IQADataModule
from tooliqa_trainer.errors import UsageError
from tooliqa_trainer.export import ExportHF
from tooliqa_trainer.module import GRPOModule

__all__ = ["CHECKPOINTS", "CONFIG", "SaveRunConfig", "TrainCLI", "check_data", "check_resume", "rollout_batches"]

CHECKPOINTS = "checkpoints"
"""Sub-folder of the run folder where ``ModelCheckpoint`` callbacks without a ``dirpath`` write."""
CONFIG = "config.yaml"
"""The run's parsed config, in the run folder."""


def rollout_batches(max_steps: int, ppo_epochs: int, minibatches: int) -> int:
    """Training batches needed for ``max_steps`` optimizer steps at ``ppo_epochs × minibatches`` steps per batch."""
    return math.ceil(max_steps / (ppo_epochs * minibatches))


class SaveRunConfig(SaveConfigCallback):
    """Writes the parsed config to ``<run folder>/config.yaml`` (not the logger's version folder), with
    ``ckpt_path`` cleared, so ``fit --config <run>/config.yaml`` reruns the run from the start."""

    def save_config(self, trainer: Trainer, pl_module, stage: str) -> None:
        config = self.config.clone()
        if "ckpt_path" in config:
            config.ckpt_path = None
        path = Path(trainer.default_root_dir) / CONFIG
        path.parent.mkdir(parents=True, exist_ok=True)
        self.parser.save(config, path, skip_none=False, overwrite=True, multifile=False)


class TrainCLI(LightningCLI):
    """LightningCLI with ``fit`` and ``validate`` only (the policy has no test or predict step), the shared values
    linked so they are set once, and the run folder's fixed layout (module docstring)."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {
            "fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule"},
            "validate": {"model", "dataloaders", "datamodule"},
        }

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments(
            ("trainer.max_steps", "model.grpo.ppo_epochs", "model.grpo.minibatches"),
            "data.steps",
            compute_fn=rollout_batches,
        )
        parser.link_arguments("seed_everything", "data.seed", compute_fn=int)

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        user = config.get("callbacks") or []
        user = user if isinstance(user, list) else [user]
        if config.get("enable_progress_bar", True) is not False and not any(
            isinstance(c, ProgressBar) for c in [*user, *callbacks]
        ):
            callbacks = [*callbacks, StepProgressBar()]
        if not any(isinstance(c, ToolReport) for c in [*user, *callbacks]):
            callbacks = [*callbacks, ToolReport()]  # every run folder gets its curves.png and tools.md
        trainer = super()._instantiate_trainer(config, callbacks)
        for checkpoint in trainer.checkpoint_callbacks:
            if isinstance(checkpoint, ModelCheckpoint) and checkpoint.dirpath is None:
                # Lightning's default is the logger's version_N folder: a new number each run, so "last" never resumes
                checkpoint.dirpath = os.path.realpath(Path(trainer.default_root_dir) / CHECKPOINTS)
        return trainer

    def before_fit(self) -> None:
        check_data(self.datamodule)
        config = self.config_init[self.subcommand]
        config["ckpt_path"] = check_resume(self.trainer.default_root_dir, config.get("ckpt_path"), self.model)

    def before_validate(self) -> None:
        check_data(self.datamodule)

    def after_fit(self) -> None:
        if not self.trainer.is_global_zero:
            return
        root = Path(self.trainer.default_root_dir)
        names = [CHECKPOINTS, CONFIG, "hf", "tools.md", "curves.png"]
        present = [f"{n}/" if (root / n).is_dir() else n for n in names if (root / n).exists()]
        print(f"run folder {root}: {', '.join(present)}")
        for export in (c for c in self.trainer.callbacks if isinstance(c, ExportHF)):  # the last line: the model
            print(
                f"exported model: {export.target(self.trainer)} (score with apps/score.py --ckpt, evaluate with apps/eval.py --ckpt)"
            )


def check_data(data: IQADataModule) -> None:
    """Refuse a dataset folder or label file that does not exist, naming its config key (before any weights load)."""
    for key, specs in (("train", data.train_specs), ("val", data.val_specs)):
        for index, spec in enumerate(specs):
            where = f"data.{key}[{index}]"
            if not Path(spec.root).is_dir():
                raise UsageError(
                    f"{where}.root: {spec.root}: no such folder; fix the path in the config or --data.{key}"
                )
            if spec.labels is not None and not Path(spec.labels).is_file():
                raise UsageError(f"{where}.labels: {spec.labels}: no such file")


def check_resume(root: str | os.PathLike, ckpt_path: str | None, model: GRPOModule) -> str | None:
    """The checkpoint ``fit`` should resume from, after refusing the common mistakes with a :class:`UsageError`.

    * no ``ckpt_path`` but ``root`` already holds a run (a checkpoint or an export): refused, it would be overwritten;
    * ``"last"`` resolves to ``<root>/checkpoints/last.ckpt`` (Lightning would silently start from scratch when it
      is missing: refused);
    * a checkpoint whose model settings differ from this run's: refused, naming the keys.
    """
    root = Path(root)
    last = root / CHECKPOINTS / "last.ckpt"
    if ckpt_path is None:
        held = [p for p in (last, root / "hf" / "config.json") if p.exists()]
        if held:
            raise UsageError(
                f"{root} already holds a run ({held[0]}); resume it with --ckpt_path last, or start a new run in "
                f"another folder with --trainer.default_root_dir runs/NEW (or delete {root})"
            )
        return None
    if ckpt_path == "last":
        if not last.is_file():
            raise UsageError(f"--ckpt_path last: no {last} to resume; run fit without --ckpt_path first")
        ckpt_path = str(last)
    elif ckpt_path in ("best", "hpc", "registry"):
        return ckpt_path
    elif not Path(ckpt_path).is_file():
        raise UsageError(f"--ckpt_path {ckpt_path}: no such file (a run's checkpoints are in <run>/{CHECKPOINTS}/)")
    saved = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True).get("hyper_parameters")
    if saved is not None:
        diffs = _differences(plain(dict(model.hparams)), saved, "model")
        if diffs:
            shown = "; ".join(f"{key}: {old!r} in the checkpoint, {new!r} now" for key, old, new in diffs[:4])
            more = f" (+{len(diffs) - 4} more)" if len(diffs) > 4 else ""
            raise UsageError(
                f"--ckpt_path {ckpt_path} was trained with other settings: {shown}{more}; resume with the run's own "
                f"config (--config {Path(ckpt_path).parent.parent / CONFIG}) or start a new run"
            )
    return ckpt_path


def _differences(now: Any, saved: Any, key: str) -> list[tuple[str, Any, Any]]:
    """``(dotted key, saved, now)`` for every leaf that differs between two plain nested dicts."""
    if isinstance(now, dict) and isinstance(saved, dict):
        out = []
        for name in sorted(set(now) | set(saved), key=str):
            out += _differences(now.get(name), saved.get(name), f"{key}.{name}")
        return out
    return [] if now == saved else [(key, saved, now)]


def quiet_console() -> None:
    """Silence what a user cannot act on: DeepSpeed's "Setting accelerator to CPU" (printed to stdout on import, in
    front of ``--print_config``'s YAML), Lightning's logger advertisement and two Lightning-internal notices."""
    if "DS_ACCELERATOR" not in os.environ and not torch.cuda.is_available():
        os.environ["DS_ACCELERATOR"] = "cpu"  # what DeepSpeed falls back to anyway, said explicitly: no warning
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(lambda record: not str(record.msg).startswith("💡 Tip"))
    # Lightning's own pytree call (utilities/_pytree.py) and its note on IterableDataset.__len__ (our datasets are
    # single-process streams sized by the step plan): nothing in a config changes either.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r".*Your `IterableDataset` has `__len__` defined.*")


def make_cli(args: list[str] | None, run: bool, description: str | None) -> TrainCLI:
    """Build (and with ``run`` execute) the CLI over ``args`` (default: the command line)."""
    quiet_console()
    # each config field's docstring is its --help text (jsonargparse reads attribute docstrings only when told)
    set_parsing_settings(docstring_parse_attribute_docstrings=True)
    return TrainCLI(
        GRPOModule,
        IQADataModule,
        args=args,
        run=run,
        auto_configure_optimizers=False,  # GRPOModule.configure_optimizers owns AdamW and the lr schedule
        save_config_callback=SaveRunConfig,
        save_config_kwargs={"save_to_log_dir": False},
        # allow_abbrev=False: argparse's default took --trainer.max_step for --trainer.max_steps without a word
        parser_kwargs={
            "prog": PROGS["train"],
            "formatter_class": HelpFormatter,
            "description": description,
            "allow_abbrev": False,
            **{name: {"allow_abbrev": False} for name in TrainCLI.subcommands()},
        },
    )
