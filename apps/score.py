"""Score images with a Tool-IQA model: one line per image, path<TAB>score<TAB>the tool calls it made.

python apps/score.py --ckpt guanq/Tool-IQA-8B photo.jpg holiday/      # the official weights (hub or its cache)
python apps/score.py --ckpt /models/Tool-IQA-8B photo.jpg              # a local copy (hf download … --local-dir)
python apps/score.py --ckpt runs/demo/hf --config configs/score/demo.yaml runs/hidden-evidence/held_out/images

Folders contribute their image files (recursively, sorted). A score is in [1, 5], higher = better; "nan" with the
reason when none could be read. The default protocol is the paper's (its prompts, both tools, 2 rounds); a model
trained with other prompts needs them given (--config, as for the demo). Python: tooliqa_trainer.score_images.
"""

from __future__ import annotations

import sys


def main(args: list[str] | None = None) -> None:
    from tooliqa_trainer.cli_front import check

    argv = sys.argv[1:] if args is None else args
    check(argv, "score")  # --help and unknown options before torch loads
    from tooliqa_trainer.errors import UsageError
    from tooliqa_trainer.score import ScoreJob, build_parser, score_images, summarise_calls

    parser = build_parser(__doc__)
    options = parser.instantiate(parser.parse_args(argv)).as_dict()
    options.pop("config", None)
    images = options.pop("images")
    try:
        for result in score_images(images, job=ScoreJob(**options)):
            a = result.assessment
            score = f"{a.score:.3f}" if a.score is not None else "nan"
            note = summarise_calls(a) if a.score is not None else f"{a.status}: {a.detail}; {summarise_calls(a)}"
            print(f"{result.path}\t{score}\t{note}", flush=True)
    except UsageError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
