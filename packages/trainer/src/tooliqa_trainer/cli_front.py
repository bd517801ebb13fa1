"""The fast front of ``apps/train.py``: ``--help`` and the argument errors it can see, answered before Lightning loads.

Why: building the real parser needs Lightning, ≈ 17 s to import on a busy 2-core box, so every ``--help`` and typo
waited 25 s. The front reads ``cli_snapshot.json`` — the real parser's help texts and option names, written by
``python -m tooliqa_trainer.cli_front --write`` and kept equal to the real parser by a test — and answers:

* ``-h`` / ``--help`` at any level (the snapshot's text);
* a missing or unknown subcommand (``test`` / ``predict`` are not offered: the policy has no such steps);
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

__all__ = ["SNAPSHOT", "check", "snapshot"]

SNAPSHOT = Path(__file__).with_name("cli_snapshot.json")
PROG = "train.py"
"""The program name in usage lines (the same however the app is launched, so the snapshot is stable)."""
HELP_WIDTH = 120
"""Columns the help is formatted to (argparse reads ``COLUMNS``)."""


def check(argv: list[str], snapshot_path: Path = SNAPSHOT) -> None:
    """Print help and exit 0, or print a one-line error and exit 2, or return when the full parser must decide."""
    snap = json.loads(snapshot_path.read_text())
    subcommands = list(snap["help"])[1:]
    choose = f"choose one of: {', '.join(subcommands)} (e.g. {PROG} fit --config configs/demo.yaml)"
    if not argv or argv[0] in ("-h", "--help"):
        if argv:
            _exit(snap["help"][""], 0)
        _exit(f"error: no subcommand; {choose}", 2)
    command, rest = argv[0], argv[1:]
    if command.startswith("-"):
        return  # an option of the main parser (e.g. --config before the subcommand): the full parser's business
    if command not in subcommands:
        _exit(f"error: unknown subcommand {command!r}; {choose}", 2)
    options = snap["options"][command]
    known = set(options)
    # keys whose value is a class (callbacks, logger, strategy, …) take init_args the snapshot cannot list
    open_keys = [o for o in options if not any(p.startswith(o + ".") for p in options)]
    expects_file = False
    for token in rest:
        if expects_file:
            expects_file = False
            if not Path(token).is_file():
                _exit(f"error: --config {token}: no such file", 2)
            continue
        if token in ("-h", "--help"):
            _exit(snap["help"][command], 0)
        if not token.startswith("--"):
            expects_file = token == "-c"
            continue
        name = token.split("=", 1)[0]
        if name == "--config" and "=" not in token:
            expects_file = True
        if name in known or name.rstrip("+") in known or any(name.startswith(o + ".") for o in open_keys):
            continue
        near = difflib.get_close_matches(name, options, n=2, cutoff=0.75)
        hint = f" (did you mean {' or '.join(near)}?)" if near else ""
        _exit(f"error: unknown option {name}{hint}; the options: {PROG} {command} --help", 2)


def _exit(text: str, code: int) -> None:
    print(text, file=sys.stdout if code == 0 else sys.stderr)
    sys.exit(code)


def snapshot(description: str | None) -> dict:
    """The real parser's help texts (main and per subcommand) and option names, as ``cli_snapshot.json`` holds them.
    Imports Lightning."""
    import os

    from tooliqa_trainer.cli import TrainCLI, make_cli

    class _Built(Exception):
        pass

    def stop(self, parser, args):  # the parser is built; parsing would run the CLI
        raise _Built(self)

    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(HELP_WIDTH)
    original = TrainCLI.parse_arguments
    TrainCLI.parse_arguments = stop
    try:
        make_cli([], run=True, description=description)
        raise AssertionError("TrainCLI did not build its parser")
    except _Built as built:
        cli = built.args[0]
        parsers = {"": cli.parser, **cli._subcommand_parsers}
        helps = {name: parser.format_help() for name, parser in parsers.items()}
    finally:
        TrainCLI.parse_arguments = original
        if columns is None:
            os.environ.pop("COLUMNS")
        else:
            os.environ["COLUMNS"] = columns
    options = {
        name: sorted({o for action in parser._actions for o in action.option_strings if o.startswith("--")})
        for name, parser in parsers.items()
        if name
    }
    return {"help": helps, "options": options}


def _description(app: Path) -> str | None:
    import ast

    return ast.get_docstring(ast.parse(app.read_text()), clean=False)


if __name__ == "__main__":  # python -m tooliqa_trainer.cli_front --write [apps/train.py]
    if sys.argv[1:2] != ["--write"]:
        sys.exit("usage: python -m tooliqa_trainer.cli_front --write [apps/train.py]")
    app = Path(sys.argv[2] if len(sys.argv) > 2 else "apps/train.py")
    SNAPSHOT.write_text(json.dumps(snapshot(_description(app)), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {SNAPSHOT}")
