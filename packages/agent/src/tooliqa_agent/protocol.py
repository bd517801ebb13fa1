"""The Tool-IQA protocol as a per-trajectory state machine (SPEC §2), independent of tokens and engines.

States are the kind of the next assistant turn::

    rubric ──(any finished turn)──▶ action ──(valid call, rounds left)──▶ action
       │                              │ ──(call, last round used)─────▶ final
       │ (tools none)                 │ ──(<answer>)──────────────────▶ done (score or bad score)
       └──────────────────────────▶ final ──(<answer>)─────────────────▶ done
                                      final ──(<tool_call>)──▶ refused (failure turn + P_final), once; then done

An invalid call uses up its round and is answered by a failure turn. A turn with neither a tool call nor an answer,
or one cut by ``max_new_tokens``, ends the trajectory as a failure. Scores are never clamped and never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from tooliqa_agent.grammar import GrammarConfig
from tooliqa_agent.prompts import PromptConfig
from tooliqa_agent.types import TurnKind
from tooliqa_tools import GammaConfig, MagnifierConfig, ToolCall, ToolError, Toolkit, make_toolkit

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


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
    refusals: int = 1
    """Tool calls refused (failure turn + P_final) after the last round before the trajectory fails."""
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
    def first_kind(self) -> TurnKind:
        """Kind of the first assistant turn."""
        if self.rubric:
            return "rubric"
        return "action" if self.tools_on else "final"

    def make_toolkit(self) -> Toolkit:
        return make_toolkit(self.tools, magnifier=self.magnifier, gamma=self.gamma)


def parse_score(text: str) -> tuple[float | None, str | None]:
    """(score, failure) from a non-rubric turn: the last ``<answer>``, its first number, valid only in [1, 5]."""
    answers = _ANSWER.findall(text)
    if not answers:
        return None, "no_action: no <answer>…</answer> block"
    number = _NUMBER.search(answers[-1])
    if number is None:
        return None, f"no_number: the last answer holds no number: {answers[-1].strip()[:60]!r}"
    value = float(number.group())
    if not 1.0 <= value <= 5.0:
        return None, f"out_of_range: score {number.group()} is outside [1, 5]"
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
    if _ANSWER.search(text):  # an answer ends the trajectory even beside a tool call (format reward judges that)
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
