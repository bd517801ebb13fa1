"""Evaluate a Tool-IQA checkpoint (or a base model, zero-shot) on IQA datasets: a thin parser over
``tooliqa_trainer.evaluation.run_evaluation``.

    python apps/eval.py --config configs/eval/demo.yaml     # the CPU demo's export on its held-out set
    python apps/eval.py --config configs/eval/paper_table1.yaml --ckpt /models/tool-iqa-8b
    python apps/eval.py --ckpt Qwen/Qwen3-VL-8B-Instruct --data clive=/data/ChallengeDB_release --protocol.tools none
"""

from __future__ import annotations

from jsonargparse import ActionConfigFile, ArgumentParser, set_parsing_settings

from tooliqa_trainer.evaluation import EvalJob, run_evaluation


def build_parser() -> ArgumentParser:
    """``--config`` YAML plus one flag per ``EvalJob`` field (``--protocol.tools``, ``--eval.batch_size``, …)."""
    set_parsing_settings(docstring_parse_attribute_docstrings=True)
    parser = ArgumentParser(description=__doc__, default_config_files=[])
    parser.add_argument("--config", action=ActionConfigFile, help="YAML with any of the options below")
    parser.add_argument("--data", nargs="+", type=str, required=True, help="datasets: NAME[/SPLIT]=ROOT[:LABELS] …")
    parser.add_class_arguments(EvalJob, as_group=False, skip={"data"})
    return parser


def main(args: list[str] | None = None) -> None:
    parser = build_parser()
    options = parser.instantiate(parser.parse_args(args)).as_dict()
    options.pop("config", None)
    job = EvalJob(**{**options, "data": tuple(options["data"])})
    result = run_evaluation(job)
    print((result.out_dir / "table.md").read_text())
    print(f"wrote {result.out_dir} ({result.assessed} assessed, {result.skipped} already done)")


if __name__ == "__main__":
    main()
