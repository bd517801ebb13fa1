"""Evaluate a Tool-IQA checkpoint (or a base model, zero-shot) on IQA datasets: a thin parser over
``tooliqa_trainer.evaluation.run_evaluation``.

    python apps/eval.py --config configs/eval/demo.yaml     # the CPU demo's export (runs/demo/hf) on its held-out set
    python apps/eval.py --ckpt runs/demo/hf --data biq2021=/data/biq2021 --out runs/eval-biq
    python apps/eval.py --config configs/eval/paper_table1.yaml --ckpt /models/tool-iqa-8b
    python apps/eval.py --ckpt Qwen/Qwen3-VL-8B-Instruct --data clive=/data/ChallengeDB_release --protocol.tools none

Operator errors (a bad --out, --ckpt, --data or --engine.device, a folder holding another run) are reported in one
line before the model loads, with exit status 2.
"""

from __future__ import annotations

import errno
import sys


def build_parser():
    """``--config`` YAML plus one flag per ``EvalJob`` field (``tooliqa_trainer.evaluation.build_parser``)."""
    from tooliqa_trainer.evaluation import build_parser as evaluation_parser

    return evaluation_parser(__doc__)


def _operator_errors() -> tuple[type[Exception], ...]:
    from tooliqa_data import LabelError
    from tooliqa_data.records import FolderLockedError
    from tooliqa_data.runner import ResumeMismatchError
    from tooliqa_trainer.preflight import UsageError
    from tooliqa_trainer.weights import CheckpointError

    return UsageError, LabelError, CheckpointError, FolderLockedError, ResumeMismatchError


def main(args: list[str] | None = None) -> None:
    from tooliqa_trainer.cli_front import check

    argv = sys.argv[1:] if args is None else args
    check(argv, "eval")  # --help and unknown options before torch loads
    from tooliqa_trainer.evaluation import EvalJob, run_evaluation

    parser = build_parser()
    options = parser.instantiate(parser.parse_args(argv)).as_dict()
    options.pop("config", None)
    try:
        job = EvalJob(**{**options, "data": tuple(options["data"])})
        result = run_evaluation(job)
    except _operator_errors() as err:  # what the operator must change: one line, no traceback
        print(f"eval.py: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        print(
            f"eval.py: error: writing {options['out']}: {err.strerror}; free space, then rerun the same command "
            "(it resumes after the last complete record)",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
    print((result.out_dir / "table.md").read_text())
    print(f"wrote {result.out_dir} ({result.assessed} assessed, {result.skipped} already done)")


if __name__ == "__main__":
    main()
