"""The fast front of ``apps/train.py``, ``apps/score.py`` and ``apps/eval.py``: ``--help`` and the argument errors it can see, answered
before torch and Lightning load.

Why: building the real parsers needs the config classes, and with them torch (≈ 5 s) and Lightning (≈ 17 s to import
on a busy 2-core box), so every ``--help`` and typo waited 25 s. The front reads a snapshot per app
(``cli_<app>.json``: the real parser's help texts and option names, written by ``python -m
tooliqa_trainer.cli_front --write`` and kept equal to the real parsers by a test) and answers:

* ``-h`` / ``--help`` at any level (the snapshot's text);
* a missing or unknown subcommand (``train``: ``test`` / ``predict`` are not offered, the policy has no such steps);
* an unknown option, abbreviations included (``--trainer.max_step``), with the nearest names;
* a ``--config`` file that does not exist.

Everything else (values, types, keys inside config files) goes on to the real parser, which refuses the same
mistakes, only later. Only the standard library is imported here.
"""

from __future__ import annotations

import difflib
import json
import sys
from pathlib import Path

__all__ = ["PROGS", "check", "snapshot", "snapshot_path"]

PROGS = {"train": "train.py", "score": "score.py", "eval": "eval.py"}
"""Each app's program name in usage lines (fixed, so the snapshot does not depend on how the app was launched)."""
HELP_WIDTH = 120
"""Columns the help is formatted to (argparse reads ``COLUMNS``)."""


def snapshot_path(app: str) -> Path:
    """Where the app's snapshot lives (beside this module, shipped with the package)."""
    return Path(__file__).with_name(f"cli_{app}.json")


def check(argv: list[str], app: str) -> None:
    """Print help and exit 0, or print a one-line error and exit 2, or return when the full parser must decide."""
    snap = json.loads(snapshot_path(app).read_text())
    prog = PROGS[app]
    subcommands = [name for name in snap["help"] if name]
    if not subcommands:  # one parser (score.py, eval.py): options and positionals
        if any(token in ("-h", "--help") for token in argv):
            _exit(snap["help"][""], 0)
        _check_options(argv, snap["options"][""], prog)
        return
    choose = f"choose one of: {', '.join(subcommands)} (e.g. {prog} fit --config configs/demo.yaml)"
    if not argv or argv[0] in ("-h", "--help"):
        if argv:
            _exit(snap["help"][""], 0)
        _exit(f"error: no subcommand; {choose}", 2)
    command, rest = argv[0], argv[1:]
    if command.startswith("-"):
        return  # an option of the main parser (e.g. --config before the subcommand): the full parser's business
    if command not in subcommands:
        _exit(f"error: unknown subcommand {command!r}; {choose}", 2)
    if any(token in ("-h", "--help") for token in rest):
        _exit(snap["help"][command], 0)
    _check_options(rest, snap["options"][command], f"{prog} {command}")


def _check_options(tokens: list[str], options: list[str], prog: str) -> None:
    known = set(options)
    # keys whose value is a class (callbacks, logger, strategy, …) or an optional dataclass (data.hidden_evidence:
    # only its ``.help`` is listed) take nested keys the snapshot cannot list; the full parser checks those
    open_keys = [o for o in options if all(p == o + ".help" for p in options if p.startswith(o + "."))]
    expects_file = False
    for token in tokens:
        if expects_file:
            expects_file = False
            if not Path(token).is_file():
                _exit(f"error: --config {token}: no such file", 2)
            continue
        if not token.startswith("--"):
            expects_file = token == "-c"
            continue
        name = token.split("=", 1)[0]
        if name == "--config" and "=" not in token:
            expects_file = True
        elif name == "--config" and not Path(token.split("=", 1)[1]).is_file():
            _exit(f"error: {token}: no such file", 2)
        if name in known or name.rstrip("+") in known or any(name.startswith(o + ".") for o in open_keys):
            continue
        near = difflib.get_close_matches(name, options, n=2, cutoff=0.75)
        hint = f" (did you mean {' or '.join(near)}?)" if near else ""
        _exit(f"error: unknown option {name}{hint}; the options: {prog} --help", 2)


def _exit(text: str, code: int) -> None:
    print(text, file=sys.stdout if code == 0 else sys.stderr)
    sys.exit(code)


def snapshot(app: str, description: str | None) -> dict:
    """The real parser's help texts (main and per subcommand) and option names, as ``cli_<app>.json`` holds them.
    Imports the app's dependencies (Lightning for ``train``)."""
    import os

    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(HELP_WIDTH)
    try:
        parsers = _parsers(app, description)
        helps = {name: parser.format_help() for name, parser in parsers.items()}
    finally:
        if columns is None:
            os.environ.pop("COLUMNS")
        else:
            os.environ["COLUMNS"] = columns
    options = {
        name: sorted({o for action in parser._actions for o in action.option_strings if o.startswith("--")})
        for name, parser in parsers.items()
        if name or len(parsers) == 1
    }
    return {"help": helps, "options": options}


def _parsers(app: str, description: str | None) -> dict:
    """``{"": main parser, subcommand: its parser, …}``."""
    if app == "score":
        from tooliqa_trainer.score import build_parser

        return {"": build_parser(description)}
    if app == "eval":
        from tooliqa_trainer.evaluation import build_parser

        return {"": build_parser(description)}
    from tooliqa_trainer.cli import TrainCLI, make_cli

    class _Built(Exception):
        pass

    def stop(self, parser, args):  # the parser is built; parsing would run the CLI
        raise _Built(self)

    original = TrainCLI.parse_arguments
    TrainCLI.parse_arguments = stop
    try:
        make_cli([], run=True, description=description)
        raise AssertionError("TrainCLI did not build its parser")
    except _Built as built:
        cli = built.args[0]
        return {"": cli.parser, **cli._subcommand_parsers}
    finally:
        TrainCLI.parse_arguments = original


def app_description(path: Path) -> str | None:
    """An app's module docstring (its ``--help`` description), read without running it."""
    import ast

    return ast.get_docstring(ast.parse(path.read_text()), clean=False)


if __name__ == "__main__":  # python -m tooliqa_trainer.cli_front --write   (from the repository root)
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tooliqa_trainer.cli_front --write   (from the repository root)")
    for name in PROGS:
        text = snapshot(name, app_description(Path("apps") / f"{name}.py"))
        snapshot_path(name).write_text(json.dumps(text, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {snapshot_path(name)}")
