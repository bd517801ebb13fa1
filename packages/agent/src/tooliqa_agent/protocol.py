"""The Tool-IQA protocol as a per-trajectory state machine (SPEC §2), independent of tokens and engines.

States are the kind of the next assistant turn::

    rubric ──(any finished turn)──▶ action ──(valid call, rounds left)──▶ action
       │                              │ ──(call, last round used)─────▶ final
       │ (tools none)                 │ ──(<answer>)──────────────────▶ done (score or bad score)
       └──────────────────────────▶ final ──(<answer>)─────────────────▶ done
                                      final ──(<tool_call>)──▶ done (failure: tool_after_last_round)

An invalid call uses up its round and is answered by a failure turn. A turn with neither a tool call nor an answer,
or one cut by ``max_new_tokens``, ends the trajectory as a failure. Scores are never clamped and never guessed.
With ``refusals`` > 0 (not SPEC §2) the first such calls after the last round are answered by a failure turn + P_final
instead of ending the trajectory.

Score grammar (:func:`parse_score`). The score is read from the content of the turn's last ``<answer>`` block (the
last ``<answer>`` followed by a ``</answer>``, up to the first ``</answer>`` after it), never from other text. In it,
the first *numeral* is taken whole: a run of digits with ``.`` or ``,`` between digits, with the sign (``+``, ``-``
or ``−`` U+2212) and the ``.``/``,`` written directly before it and an exponent (``e1``, ``E-2``) directly after it.
Only a numeral of the form ``[sign] digits [. digits]`` (ASCII digits) is a number; any other (``.5``, ``4,5``,
``1e1``, ``4.5.1``) is the failure ``bad_number`` (never a part of it read as a score). Trailing punctuation ends a
numeral (``4.`` and ``4,`` read 4), as does anything else (``4.5/5`` reads 4.5). A number outside [1, 5], negative
ones included (``-3``, ``−3``), is the failure ``out_of_range``. Parsing is linear in the text's length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from tooliqa_agent.grammar import GrammarConfig
from tooliqa_agent.prompts import PromptConfig
from tooliqa_agent.types import TurnKind
from tooliqa_tools import GammaConfig, MagnifierConfig, ToolCall, ToolError, Toolkit, make_toolkit

ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
# Everything that could belong to one written number (see the score grammar above), so none is read in part.
_NUMERAL = re.compile(r"[-+\u2212]?[.,]?\d(?:[\d.,]*\d)?(?:[eE][-+\u2212]?\d+)?")
_DIGIT = re.compile(r"\d")
_DECIMAL = re.compile(r"([-+\u2212]?)([0-9]+(?:\.[0-9]+)?)")


@dataclass(frozen=True)
class ProtocolConfig:
    """Which protocol runs (paper: both tools, 2 rounds, rubric on, free decoding)."""

    tools: Literal["none", "magnifier", "gamma", "both"] = "both"
    """The toolkit offered to the model; "none" removes tool schemas and the gate."""
    max_tool_rounds: int = 2
    """Tool rounds before the forced answer (one call per round; a failed call uses its round)."""
    rubric: bool = True
    """Start with the rubric turn (P0); off = the first turn is already the gate (or the single-turn question)."""
    structured: bool = False
    """Constrain every turn to the protocol grammar (``tooliqa_agent.grammar``): on for the untrained CPU demo."""
    refusals: int = 0
    """Tool calls after the last round answered by a failure turn + P_final before a further one ends the trajectory
    (``tool_after_last_round``). 0 (SPEC §2): the turn after the last round must answer, a call there ends the
    trajectory without a score (no rank reward, no BATE). > 0 gives the model another chance to answer; a refused
    call counts as a failed call and fails the format check ``tool_rounds``, but the score it then gives counts."""
    magnifier: MagnifierConfig = field(default_factory=MagnifierConfig)
    """Magnifier settings (coordinate system, minimum side, zoom cap, pixel budget)."""
    gamma: GammaConfig = field(default_factory=GammaConfig)
    """Gamma corrector settings (brighten/darken γ, bounds)."""
    prompts: PromptConfig = field(default_factory=PromptConfig)
    """Every text shown to the model."""
    grammar: GrammarConfig = field(default_factory=GrammarConfig)
    """Bounds of the constrained turns when ``structured`` is on (thinking and note lengths, score decimals)."""

    def __post_init__(self) -> None:
        if self.max_tool_rounds < 0:
            raise ValueError(f"ProtocolConfig.max_tool_rounds must be ≥ 0, got {self.max_tool_rounds}")
        if self.refusals < 0:
            raise ValueError(f"ProtocolConfig.refusals must be ≥ 0, got {self.refusals}")

    @property
    def tools_on(self) -> bool:
        """The model may call tools at all."""
        return self.tools != "none" and self.max_tool_rounds > 0

    @property
    def thinking_tag(self) -> str:
        """The reasoning tag the prompts ask for, which the format reward and the structured grammar expect."""
        return self.prompts.thinking_tag(self.rubric, self.tools_on)

    @property
    def first_kind(self) -> TurnKind:
        """Kind of the first assistant turn."""
        if self.rubric:
            return "rubric"
        return "action" if self.tools_on else "final"

    def make_toolkit(self) -> Toolkit:
        return make_toolkit(self.tools, magnifier=self.magnifier, gamma=self.gamma)


def last_answer(text: str) -> tuple[int, int] | None:
    """(start, end) of the content of ``text``'s last ``<answer>…</answer>`` block, None without one.

    The last ``<answer>`` that a ``</answer>`` follows, up to the first ``</answer>`` after it: two reverse searches
    and a forward one (a lazy ``<answer>(.*?)</answer>`` regex rescans the rest from every unclosed tag)."""
    close = text.rfind(ANSWER_CLOSE)
    start = text.rfind(ANSWER_OPEN, 0, close) if close != -1 else -1
    if start == -1:
        return None
    start += len(ANSWER_OPEN)
    return start, text.find(ANSWER_CLOSE, start)


def score_numeral(text: str) -> tuple[int, str] | None:
    """(offset in ``text``, the numeral as written) that :func:`parse_score` reads, None without an answer or numeral."""
    span = last_answer(text)
    digit = _DIGIT.search(text, *span) if span is not None else None
    if digit is None:
        return None
    # A numeral starts at most two characters (sign, separator) before its first digit. Searching from there, not
    # from the answer's start, keeps a long digit-free answer a fast scan for one character class.
    numeral = _NUMERAL.search(text, max(span[0], digit.start() - 2), span[1])
    assert numeral is not None  # the digit itself starts one
    return numeral.start(), numeral.group()


def parse_score(text: str) -> tuple[float | None, str | None]:
    """(score, failure) of a non-rubric turn by the score grammar above: the last ``<answer>``'s first numeral, read
    whole, valid only as a plain decimal in [1, 5]."""
    span = last_answer(text)
    if span is None:
        return None, "no_action: no <answer>…</answer> block"
    located = score_numeral(text)
    if located is None:
        return None, f"no_number: the last answer holds no number: {text[span[0] : span[1]].strip()[:60]!r}"
    numeral = located[1]
    number = _DECIMAL.fullmatch(numeral)
    if number is None:
        return None, f"bad_number: {numeral[:40]!r} is not a plain decimal (digits, optionally a point and digits)"
    sign, digits = number.groups()
    value = -float(digits) if sign in ("-", "\u2212") else float(digits)
    if not 1.0 <= value <= 5.0:
        return None, f"out_of_range: score {numeral[:40]} is outside [1, 5]"
    return value, None


@dataclass(frozen=True)
class Reply:
    """Continue with a text-only user turn (after the rubric note: the gate; after a bad call: a failure turn)."""

    text: str
    role: Literal["user", "tool"]
    call: ToolCall | None = None
    error: str | None = None


@dataclass(frozen=True)
class RunTool:
    """Run ``call``; the observation (or its failure) follows with ``remaining`` calls left."""

    call: ToolCall
    remaining: int


@dataclass(frozen=True)
class Finish:
    """The trajectory is over."""

    score: float | None
    failure: str | None


Outcome = Reply | RunTool | Finish


@dataclass
class ProtocolState:
    """Where one trajectory stands."""

    kind: TurnKind
    """Kind of the next assistant turn."""
    rounds_used: int = 0
    """Tool rounds consumed (successful or failed calls)."""
    refusals_used: int = 0
    """Calls refused after the last round."""

    @classmethod
    def start(cls, config: ProtocolConfig) -> ProtocolState:
        return cls(kind=config.first_kind)


def advance(state: ProtocolState, text: str, finished: bool, config: ProtocolConfig, toolkit: Toolkit) -> Outcome:
    """Apply one finished assistant turn to ``state`` (mutated: the next kind, rounds) and say what comes next."""
    if not finished:
        return Finish(None, "truncated: the turn hit max_new_tokens")
    prompts = config.prompts
    if state.kind == "rubric":
        state.kind = "action" if config.tools_on else "final"
        return Reply(prompts.after_rubric(config.tools_on), role="user")
    if last_answer(text) is not None:  # an answer ends the trajectory even beside a tool call (format judges that)
        return Finish(*parse_score(text))
    if "<tool_call>" not in text:
        return Finish(None, "no_action: the turn has neither a <tool_call> nor an <answer>")
    call = _try_parse(toolkit, text)
    if state.kind == "final":
        if state.refusals_used >= config.refusals:
            return Finish(None, "tool_after_last_round: a tool call where only an answer was allowed")
        state.refusals_used += 1
        reason = prompts.refused_reason
        return Reply(
            prompts.failure_text(reason, 0),
            role="tool",
            call=call if isinstance(call, ToolCall) else None,
            error=reason,
        )
    state.rounds_used += 1
    remaining = config.max_tool_rounds - state.rounds_used
    if remaining == 0:
        state.kind = "final"
    if isinstance(call, ToolError):
        return Reply(prompts.failure_text(str(call), remaining), role="tool", error=str(call))
    return RunTool(call, remaining)


def _try_parse(toolkit: Toolkit, text: str) -> ToolCall | ToolError:
    try:
        return toolkit.parse(text)
    except ToolError as err:
        return err
