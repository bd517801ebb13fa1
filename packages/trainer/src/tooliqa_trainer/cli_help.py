"""The help formatter of ``apps/train.py`` and ``apps/score.py``."""

from __future__ import annotations

import argparse

from jsonargparse import DefaultHelpFormatter

__all__ = ["HelpFormatter"]


class HelpFormatter(DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """jsonargparse's help, with the description's lines (the apps' example commands) kept as written."""
