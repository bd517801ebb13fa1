"""Train the Tool-IQA policy with GRPO/GSPO: a thin LightningCLI over ``tooliqa_trainer``.

python apps/train.py fit --config configs/demo.yaml        # CPU demo: Tool-IQA on a tiny model, ~6 min on 2 cores
python apps/train.py fit --config configs/demo.yaml --config configs/demo/no_bate.yaml   # a demo ablation
python apps/train.py fit --config configs/tooliqa.yaml     # the paper's run (GPUs, DeepSpeed)
python apps/train.py fit --config configs/tooliqa.yaml --print_config
python apps/train.py fit --config configs/demo.yaml --ckpt_path last            # resume runs/demo/checkpoints/last.ckpt
python apps/train.py fit --config runs/demo/config.yaml --trainer.default_root_dir runs/demo-again   # rerun a run

Each run writes into its folder, the trainer's default_root_dir: checkpoints/last.ckpt, config.yaml, hf/ (the
exported model), tools.md, curves.png, lightning_logs/.
"""

from __future__ import annotations

import sys


def main(args: list[str] | None = None, run: bool = True):
    """Parse ``args`` (default: the command line), build model/data/trainer, and run the subcommand when ``run``."""
    from tooliqa_trainer.cli_front import check

    if run:  # --help and the argument errors the front can see, in well under a second (before Lightning loads)
        check(sys.argv[1:] if args is None else args, "train")
    from tooliqa_data import LabelError
    from tooliqa_trainer.cli import make_cli
    from tooliqa_trainer.errors import UsageError

    try:
        return make_cli(args, run, __doc__)
    except (UsageError, LabelError) as error:  # a wrong folder or label file: one line, no traceback
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
