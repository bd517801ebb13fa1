"""Train the Tool-IQA policy with GRPO/GSPO: a thin LightningCLI over ``tooliqa_trainer``.

python apps/train.py fit --config configs/demo.yaml        # CPU demo: Tool-IQA on a tiny model, ~14 min on 2 cores
python apps/train.py fit --config configs/demo.yaml --config configs/demo/no_bate.yaml   # a demo ablation
python apps/train.py fit --config configs/tooliqa.yaml     # the paper's run (GPUs, DeepSpeed)
python apps/train.py fit --config configs/tooliqa.yaml --print_config
python apps/train.py fit --config configs/demo.yaml --ckpt_path runs/demo/lightning_logs/version_0/checkpoints/last.ckpt
"""

from __future__ import annotations

import math

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from tooliqa_trainer import GRPOModule, IQADataModule


def rollout_batches(max_steps: int, ppo_epochs: int, minibatches: int) -> int:
    """Training batches needed for ``max_steps`` optimizer steps at ``ppo_epochs × minibatches`` steps per batch."""
    return math.ceil(max_steps / (ppo_epochs * minibatches))


class TrainCLI(LightningCLI):
    """LightningCLI with the values the model, data and trainer share linked, so they are set once."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments(
            ("trainer.max_steps", "model.grpo.ppo_epochs", "model.grpo.minibatches"),
            "data.steps",
            compute_fn=rollout_batches,
        )
        parser.link_arguments("seed_everything", "data.seed", compute_fn=int)


def main(args: list[str] | None = None, run: bool = True) -> TrainCLI:
    """Parse ``args`` (default: the command line), build model/data/trainer, and run the subcommand when ``run``."""
    return TrainCLI(
        GRPOModule,
        IQADataModule,
        args=args,
        run=run,
        auto_configure_optimizers=False,  # GRPOModule.configure_optimizers owns AdamW and the lr schedule
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"description": __doc__},
    )


if __name__ == "__main__":
    main()
