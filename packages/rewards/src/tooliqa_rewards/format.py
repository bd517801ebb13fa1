"""Format reward: 1 when a trajectory follows the protocol of SPEC §2, else 0, with the result of every check.

The reward reads plain text and flags (`FormatRecord`), never agent objects. Checks, in `FORMAT_CHECKS` order:

- ``rubric``: the rubric turn is ``<thinking>…</thinking>`` then ``<answer>`` with the five P0 attribute lines in P0's
  order, each with exactly one allowed level (a ``[…]`` around it, a ``- note`` after it, ``**bold**`` and a leading
  bullet are accepted; P0's template ``[Low/Medium/High]`` copied as is names no level and fails), then ``</answer>``;
  a missing rubric fails only where it is required.
- ``turns``: every action turn is ``<thinking>…</thinking>`` then exactly one ``<tool_call>…</tool_call>`` or
  ``<answer>…</answer>``, nothing else around them but whitespace, and there is at least one action turn.
- ``final_answer``: the last action turn answers and every earlier one calls a tool.
- ``tool_calls``: every issued tool call parsed and ran.
- ``score``: the parsed final score exists and lies in [1, 5].
- ``tool_rounds``: at most ``max_tool_rounds`` turns call a tool.

``<thinking>`` stands for the record's ``thinking_tag``: the reasoning tag the protocol's prompt asks for (P0 and PG:
``thinking``; VisualQuality-R1's single-turn question: ``think``, as its own format reward reads it).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from tooliqa_rewards.errors import RewardInputError

RUBRIC_LEVELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Sharpness", ("Low", "Medium", "High")),
    ("Noise", ("None", "Visible", "Severe")),
    ("Artifacts", ("None", "Minor", "Severe")),
    ("Exposure", ("Poor", "Good", "Excellent")),
    ("Saliency Visibility", ("Subject Clear", "Obscured")),
)
"""The P0 rubric attributes, in order, with their allowed levels (SPEC §2)."""

SCORE_RANGE = (1.0, 5.0)
"""Valid final scores (inclusive); out-of-range scores are failures, never clamped."""

THINKING_TAG = "thinking"
"""The reasoning tag of P0, PG and P_final."""


def _rubric_line(name: str, levels: tuple[str, ...], line_rest: str) -> str:
    words = r"\s+"  # "Subject  Clear", "Saliency\tVisibility"
    level = "|".join(words.join(map(re.escape, lv.split())) for lv in levels)
    label = words.join(map(re.escape, name.split()))
    # One level, bracketed or not: "[Low/Medium/High]" (P0's template) or "Low/Medium" chooses none.
    return (
        rf"[ \t]*(?:[-*][ \t]*)?(?:\*\*)?(?i:{label})(?:\*\*)?[ \t]*:[ \t]*(?:\*\*)?"
        rf"(?:\[(?i:{level})\]|(?i:{level}))(?![A-Za-z])(?![ \t]*[/|]){line_rest}"
    )


@functools.cache
def _patterns(tag: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(rubric turn, action turn) patterns for the reasoning tag ``tag``."""
    tags = rf"(?:{re.escape(tag)}|tool_call|answer)"
    # Text without a protocol tag: runs free of "<" eaten possessively, so matching is linear and never backtracks.
    body = rf"(?:[^<]++|<(?!/?{tags}>))*+"
    line_rest = rf"(?:[^<\n]++|<(?!/?{tags}>))*+"
    thinking = rf"\s*<{re.escape(tag)}>{body}</{re.escape(tag)}>\s*"
    lines = r"\s*\n".join(_rubric_line(n, lv, line_rest) for n, lv in RUBRIC_LEVELS)
    rubric = re.compile(thinking + r"<answer>\s*" + lines + r"\s*</answer>\s*")
    action = re.compile(thinking + rf"(?:<tool_call>{body}</tool_call>|<answer>{body}</answer>)\s*")
    return rubric, action


@dataclass(frozen=True)
class FormatRecord:
    """One trajectory as plain data; the trainer builds it from an agent ``Trajectory``."""

    rubric_text: str | None
    """The rubric turn's text, None when there was no rubric turn."""
    action_texts: tuple[str, ...]
    """Every later assistant turn's text, in order (tool-call turns and the final answer)."""
    tool_calls_valid: tuple[bool, ...]
    """Per action turn that issued a tool call: did the call parse and run."""
    score: float | None
    """The parsed final score, None on a parse failure."""
    rubric_required: bool = True
    """The protocol has a rubric turn (the rubric switch of the ablations)."""
    max_tool_rounds: int = 2
    """Most tool-call turns the protocol allows."""
    thinking_tag: str = THINKING_TAG
    """The reasoning tag every turn opens with, the one the protocol's prompt asks for (``think`` for
    VisualQuality-R1's single-turn question)."""

    def __post_init__(self) -> None:
        if not (self.rubric_text is None or isinstance(self.rubric_text, str)):
            raise RewardInputError(
                f"FormatRecord.rubric_text must be str or None, got {type(self.rubric_text).__name__}"
            )
        for name in ("action_texts", "tool_calls_valid"):
            if not isinstance(getattr(self, name), tuple):
                raise RewardInputError(f"FormatRecord.{name} must be a tuple, got {type(getattr(self, name)).__name__}")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", str(self.thinking_tag)):
            raise RewardInputError(f"FormatRecord.thinking_tag must be a tag name, got {self.thinking_tag!r}")


def _answers(text: str) -> bool:
    """The turn's action is an answer (an answer ends the trajectory even if a tool call is also present)."""
    return "<answer>" in text


def _check_rubric(r: FormatRecord) -> bool:
    if r.rubric_text is None:
        return not r.rubric_required
    return _patterns(r.thinking_tag)[0].fullmatch(r.rubric_text) is not None


def _check_turns(r: FormatRecord) -> bool:
    action = _patterns(r.thinking_tag)[1]
    return bool(r.action_texts) and all(action.fullmatch(t) is not None for t in r.action_texts)


def _check_final_answer(r: FormatRecord) -> bool:
    *calls, last = r.action_texts or ("",)
    return _answers(last) and all("<tool_call>" in t and not _answers(t) for t in calls)


def _check_tool_calls(r: FormatRecord) -> bool:
    return all(r.tool_calls_valid)


def _check_score(r: FormatRecord) -> bool:
    return r.score is not None and math.isfinite(r.score) and SCORE_RANGE[0] <= r.score <= SCORE_RANGE[1]


def _check_tool_rounds(r: FormatRecord) -> bool:
    rounds = sum("<tool_call>" in t and not _answers(t) for t in r.action_texts)
    return max(rounds, len(r.tool_calls_valid)) <= r.max_tool_rounds


FORMAT_CHECKS: dict[str, Callable[[FormatRecord], bool]] = {
    "rubric": _check_rubric,
    "turns": _check_turns,
    "final_answer": _check_final_answer,
    "tool_calls": _check_tool_calls,
    "score": _check_score,
    "tool_rounds": _check_tool_rounds,
}
"""Name → check; a trajectory's format reward is 1 iff every check passes."""


@dataclass(frozen=True)
class FormatResult:
    """Format rewards of N trajectories and which checks each one passed."""

    reward: torch.Tensor
    """float32 ``[N]``: 1.0 where every check passed, else 0.0 (on the CPU)."""
    passed: torch.Tensor
    """bool ``[N, C]``: ``passed[n, c]`` says trajectory n passed check ``checks[c]``."""
    checks: tuple[str, ...]
    """The check names, in column order."""

    def failure_rates(self) -> tuple[tuple[str, float], ...]:
        """(check, fraction of trajectories failing it) per check; 0.0 for an empty result."""
        rates = (~self.passed).float().mean(0).tolist() if len(self.passed) else [0.0] * len(self.checks)
        return tuple(zip(self.checks, rates))

    def failed_checks(self, index: int) -> tuple[str, ...]:
        """The names of the checks trajectory ``index`` failed."""
        return tuple(name for name, ok in zip(self.checks, self.passed[index].tolist()) if not ok)


def format_reward(records: Sequence[FormatRecord]) -> FormatResult:
    """Run every check of `FORMAT_CHECKS` on every record; reward 1.0 where all pass (a Python loop over text)."""
    checks = tuple(FORMAT_CHECKS.values())
    passed = torch.tensor([[check(r) for check in checks] for r in records], dtype=torch.bool)
    passed = passed.reshape(len(records), len(checks))  # also for N = 0
    return FormatResult(reward=passed.all(1).float(), passed=passed, checks=tuple(FORMAT_CHECKS))
