"""Structured decoding: one EBNF grammar per assistant-turn kind of the protocol (SPEC §2).

The grammars are plain strings in the EBNF dialect xgrammar reads (``root ::= …``), which is also what vLLM's
structured outputs accept (``StructuredOutputsParams(grammar=…)``), so both engines constrain a turn identically:

- ``rubric``: ``<thinking>text</thinking>`` then ``<answer>`` with the five P0 lines in order, each
  ``Name: Level - note`` with an allowed level, then ``</answer>``;
- ``action``: ``<thinking>text</thinking>`` then EITHER ``<tool_call>`` + JSON matching one enabled tool's schema
  (every number inside its range) + ``</tool_call>`` OR ``<answer>score</answer>`` with a score in [1, 5];
- ``final``: ``<thinking>text</thinking> <answer>score</answer>``.

``thinking`` is the reasoning tag the protocol's prompt asks for (``ProtocolConfig.thinking_tag``: ``think`` in
VisualQuality-R1's single-turn protocol), as the format reward checks it. Every score the grammar admits is a plain
decimal in [min_score, max_score] that ``parse_score`` reads back exactly.

A grammar ends where the turn ends: once it is complete the matcher allows only the stop token ``<|im_end|>``
(xgrammar matches text, never special tokens, so the stop token is the matcher's stop set, not a literal).
Free text is printable ASCII without ``<``/``>`` and bounded, so every turn has a byte bound
(:attr:`TurnGrammar.max_bytes`) and an untrained model terminates within ``max_new_tokens`` ≥ that bound.
Tool-call grammars are generated from the toolkit's schemas (paper/Qwen3 format with ``range``), never per tool name.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from tooliqa_agent.engines.constraints import GrammarLogitsProcessor, XGrammarConstraintFactory
from tooliqa_agent.types import TurnKind

if TYPE_CHECKING:
    from tooliqa_agent.protocol import ProtocolConfig
    from tooliqa_tools import Toolkit
    from tooliqa_tools.schemas import ParamSpec, ToolSchema


__all__ = [
    "RUBRIC",
    "GrammarConfig",
    "GrammarError",
    "GrammarLogitsProcessor",
    "RubricAttribute",
    "TurnGrammar",
    "TurnGrammars",
    "XGrammarConstraintFactory",
    "build_grammars",
    "turn_grammar",
]


class GrammarError(ValueError):
    """A tool schema or grammar setting the grammar builder cannot express; the message names the tool and field."""


@dataclass(frozen=True)
class RubricAttribute:
    """One line of the rubric answer."""

    name: str
    """Attribute name as P0 writes it, e.g. "Saliency Visibility"."""
    levels: tuple[str, ...]
    """Allowed levels, e.g. ("Subject Clear", "Obscured")."""


RUBRIC: tuple[RubricAttribute, ...] = (
    RubricAttribute("Sharpness", ("Low", "Medium", "High")),
    RubricAttribute("Noise", ("None", "Visible", "Severe")),
    RubricAttribute("Artifacts", ("None", "Minor", "Severe")),
    RubricAttribute("Exposure", ("Poor", "Good", "Excellent")),
    RubricAttribute("Saliency Visibility", ("Subject Clear", "Obscured")),
)
"""P0's five attributes in order with their allowed levels (SPEC §2)."""


@dataclass(frozen=True)
class GrammarConfig:
    """Bounds and formats of the constrained turns."""

    max_thinking_chars: int = 160
    """Longest ``<thinking>`` text. Bounds the turn so an untrained model stops within its token budget: with the
    defaults every turn is ≤ 442 bytes, inside the default 512 new tokens. 0 forces an empty ``<thinking></thinking>``
    (the CPU demo: a random tiny model's "thoughts" are sampled noise that its answer would condition on)."""
    max_note_chars: int = 24
    """Longest brief note after a rubric level; 0 drops the `` - note`` part (``Sharpness: High``): the CPU demo,
    where a random model's note characters are noise its score would condition on."""
    max_gap_chars: int = 2
    """Most spaces/newlines between ``</thinking>`` and the action. 0 writes them adjacent (the CPU demo: a random
    model's choice of whitespace is a sampled decision with no meaning, which shares the trajectory's advantage)."""
    score_decimals: int = 2
    """Most decimals of the final score ("1.00"–"5.00")."""
    min_score: float = 1.0
    """Smallest score the answer grammar admits (SPEC §2: scores outside [1, 5] are failures)."""
    max_score: float = 5.0
    """Largest score the answer grammar admits."""
    argument_decimals: int = 2
    """Most decimals of a non-integer tool argument (e.g. ``gamma``)."""
    max_unranged: int = 99_999
    """Upper bound of a number whose schema gives no range (pixel coordinates): keeps every turn bounded."""
    rubric: tuple[RubricAttribute, ...] = RUBRIC
    """The rubric lines, in order."""
    box_choices: tuple[tuple[int, int, int, int], ...] = ()
    """When given, every 4-number array argument (the Magnifier's ``bbox_2d``) is one of these boxes, in the tool's
    coordinates: a menu of regions the model picks from. The CPU demo offers the four quadrants and the centre,
    because a random model's free digits write an empty box (x1 ≥ x2 or y1 ≥ y2) about 3 times in 4. Empty: any
    box inside the range."""

    def __post_init__(self) -> None:
        if self.max_thinking_chars < 0:
            raise GrammarError(f"GrammarConfig.max_thinking_chars must be ≥ 0, got {self.max_thinking_chars}")
        if self.max_gap_chars < 0:
            raise GrammarError(f"GrammarConfig.max_gap_chars must be ≥ 0, got {self.max_gap_chars}")
        if self.max_note_chars < 0:
            raise GrammarError(f"GrammarConfig.max_note_chars must be ≥ 0, got {self.max_note_chars}")
        for box in self.box_choices:
            if len(box) != 4 or not (box[0] < box[2] and box[1] < box[3]):
                raise GrammarError(
                    f"GrammarConfig.box_choices: {list(box)} is not a box [x1, y1, x2, y2] (x1<x2, y1<y2)"
                )
        if self.score_decimals < 0 or self.argument_decimals < 0:
            raise GrammarError("GrammarConfig: score_decimals and argument_decimals must be ≥ 0")
        if not 0 <= self.min_score <= self.max_score:
            raise GrammarError(
                f"GrammarConfig: need 0 <= min_score <= max_score, got {self.min_score}, {self.max_score}"
            )


@dataclass(frozen=True)
class TurnGrammar:
    """The grammar of one turn kind."""

    ebnf: str
    """xgrammar EBNF with a ``root`` rule; pass it as ``GenerationRequest.grammar``."""
    max_bytes: int
    """Longest text the grammar admits, in UTF-8 bytes: a turn needs at most this many tokens + 1 (``<|im_end|>``)."""


@dataclass(frozen=True)
class TurnGrammars:
    """The grammars of every turn kind for one toolkit and config."""

    rubric: TurnGrammar
    action: TurnGrammar
    final: TurnGrammar

    def for_kind(self, kind: TurnKind) -> TurnGrammar:
        return getattr(self, kind)


# --- EBNF expressions with a byte bound -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Expr:
    text: str
    max_bytes: int


def _lit(value: str) -> _Expr:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return _Expr(f'"{escaped.replace(chr(9), chr(92) + "t")}"', len(value.encode()))


def _seq(*parts: _Expr) -> _Expr:
    return _Expr("(" + " ".join(p.text for p in parts) + ")", sum(p.max_bytes for p in parts))


def _alt(*parts: _Expr) -> _Expr:
    if len(parts) == 1:
        return parts[0]
    return _Expr("(" + " | ".join(p.text for p in parts) + ")", max(p.max_bytes for p in parts))


def _opt(part: _Expr) -> _Expr:
    return _Expr(f"({part.text})?", part.max_bytes)


def _chars(char_class: str, low: int, high: int) -> _Expr:
    """``low``..``high`` repetitions of a single-byte character class."""
    return _Expr(char_class if low == high == 1 else f"{char_class}{{{low},{high}}}", high)


# Printable ASCII without "<" and ">": free text can never open or close a protocol tag, and one char is one byte.
_TEXT = "[ -;=?-~]"
_TEXT_NL = "[ -;=?-~\\n]"
_TEXT_START = "[!-;=?-~]"  # free text starts with a visible character


def _free_text(max_chars: int, newlines: bool) -> _Expr:
    if max_chars == 0:
        return _lit("")  # the empty string, as "" in the EBNF
    return _seq(_Expr(_TEXT_START, 1), _chars(_TEXT_NL if newlines else _TEXT, 0, max_chars - 1))


# --- numbers in a range ---------------------------------------------------------------------------------------------


def _digits(low: int, high: int, width: int) -> _Expr:
    """Exactly ``width`` digits (leading zeros allowed) whose value lies in [low, high]."""
    if low == 0 and high == 10**width - 1:
        return _chars("[0-9]", width, width)
    if width == 1:
        return _lit(str(low)) if low == high else _Expr(f"[{low}-{high}]", 1)
    unit = 10 ** (width - 1)
    (first_low, rest_low), (first_high, rest_high) = divmod(low, unit), divmod(high, unit)
    if first_low == first_high:
        return _seq(_lit(str(first_low)), _digits(rest_low, rest_high, width - 1))
    parts = [_seq(_lit(str(first_low)), _digits(rest_low, unit - 1, width - 1))]
    if first_high - first_low > 1:
        parts.append(_seq(_Expr(f"[{first_low + 1}-{first_high - 1}]", 1), _chars("[0-9]", width - 1, width - 1)))
    parts.append(_seq(_lit(str(first_high)), _digits(0, rest_high, width - 1)))
    return _alt(*parts)


def _natural(low: int, high: int) -> _Expr:
    """A non-negative integer in [low, high] written without leading zeros."""
    parts = []
    for width in range(len(str(low)), len(str(high)) + 1):
        start, stop = max(low, 10 ** (width - 1) if width > 1 else 0), min(high, 10**width - 1)
        if start <= stop:
            parts.append(_digits(start, stop, width))
    return _alt(*parts)


def _integer(low: int, high: int) -> _Expr:
    """An integer in [low, high] as JSON writes it (``-`` sign, no leading zeros)."""
    if low > high:
        raise GrammarError(f"empty integer range [{low}, {high}]")
    parts = []
    if low < 0:
        parts.append(_seq(_lit("-"), _natural(max(1, -high), -low)))
    if high >= 0:
        parts.append(_natural(max(0, low), high))
    return _alt(*parts)


def _decimal(low: Fraction, high: Fraction, decimals: int) -> _Expr:
    """A number in [low, high] (low ≥ 0) with at most ``decimals`` decimals: "2", "2.5", "2.50"."""
    if low < 0 or low > high:
        raise GrammarError(f"decimal range [{float(low)}, {float(high)}] must be non-empty and ≥ 0")
    parts = []
    if math.ceil(low) <= math.floor(high):
        parts.append(_natural(math.ceil(low), math.floor(high)))
    for width in range(1, decimals + 1):
        # every value with exactly `width` decimals is an integer n = value * 10^width in [a, b]
        scale = 10**width
        first, last = math.ceil(low * scale), math.floor(high * scale)
        if first > last:
            continue
        (int_low, frac_low), (int_high, frac_high) = divmod(first, scale), divmod(last, scale)
        dot = _lit(".")
        if int_low == int_high:
            parts.append(_seq(_lit(str(int_low)), dot, _digits(frac_low, frac_high, width)))
            continue
        parts.append(_seq(_lit(str(int_low)), dot, _digits(frac_low, scale - 1, width)))
        if int_high - int_low > 1:
            parts.append(_seq(_natural(int_low + 1, int_high - 1), dot, _chars("[0-9]", width, width)))
        parts.append(_seq(_lit(str(int_high)), dot, _digits(0, frac_high, width)))
    if not parts:
        raise GrammarError(f"no number with ≤ {decimals} decimals lies in [{float(low)}, {float(high)}]")
    return _alt(*parts)


# --- tool calls from schemas ----------------------------------------------------------------------------------------


def _json_string(value: str) -> _Expr:
    return _lit(json.dumps(value))


def _number(param: ParamSpec, integer: bool, config: GrammarConfig, tool: str) -> _Expr:
    low, high = param.range if param.range is not None else (0, config.max_unranged)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise GrammarError(f"{tool}: {param.name}: range [{low}, {high}] must be finite for a grammar")
    if integer:
        return _integer(math.ceil(low), math.floor(high))
    return _decimal(Fraction(str(low)), Fraction(str(high)), config.argument_decimals)


def _value(param: ParamSpec, integer_arrays: bool, config: GrammarConfig, tool: str) -> _Expr:
    """The JSON value of one parameter, as ``json.dumps`` writes it."""
    if param.type == "string":
        if not param.enum:
            raise GrammarError(f"{tool}: {param.name}: a free string has no bounded grammar; give it an enum")
        return _alt(*(_json_string(choice) for choice in param.enum))
    if param.type == "number":
        return _number(param, integer=False, config=config, tool=tool)
    if param.type == "array":
        if param.length is None or param.length < 1:
            raise GrammarError(f"{tool}: {param.name}: an array needs a fixed length ≥ 1 for a grammar")
        if config.box_choices and param.length == 4:
            return _alt(*(_lit(json.dumps(list(box))) for box in config.box_choices))
        item = _number(param, integer=integer_arrays, config=config, tool=tool)
        items = [item] + [_seq(_lit(", "), item)] * (param.length - 1)
        return _seq(_lit("["), *items, _lit("]"))
    raise GrammarError(f"{tool}: {param.name}: unsupported parameter type {param.type!r}")


def _arguments(schema: ToolSchema, integer_arrays: bool, config: GrammarConfig) -> _Expr:
    """``{"key": value, ...}``: required keys in schema order, then each optional key or not, in schema order."""
    members = [
        (_seq(_json_string(p.name), _lit(": "), _value(p, integer_arrays, config, schema.name)), p.required)
        for p in schema.params
    ]
    required = [m for m, req in members if req]
    optional = [m for m, req in members if not req]
    if required:
        body = [
            required[0],
            *(_seq(_lit(", "), m) for m in required[1:]),
            *(_opt(_seq(_lit(", "), m)) for m in optional),
        ]
        return _seq(_lit("{"), *body, _lit("}"))
    # no required key: empty, or the first present optional key then any of the later ones
    starts = [_seq(m, *(_opt(_seq(_lit(", "), later)) for later in optional[i + 1 :])) for i, m in enumerate(optional)]
    return _seq(_lit("{"), _opt(_alt(*starts)) if starts else _lit(""), _lit("}"))


def _tool_call(schemas: Sequence[ToolSchema], integer_arrays: bool, config: GrammarConfig) -> _Expr:
    """``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>``, the layout of the Qwen3 chat template."""
    calls = [
        _seq(
            _lit('{"name": '),
            _json_string(schema.name),
            _lit(', "arguments": '),
            _arguments(schema, integer_arrays, config),
            _lit("}"),
        )
        for schema in schemas
    ]
    return _seq(_lit("<tool_call>\n"), _alt(*calls), _lit("\n</tool_call>"))


# --- turns ----------------------------------------------------------------------------------------------------------


def _grammar(**rules: _Expr) -> TurnGrammar:
    """Named rules (the first is ``root``) rendered as xgrammar EBNF; the bound is the root's."""
    lines = [f"{name} ::= {expr.text}" for name, expr in rules.items()]
    return TurnGrammar(ebnf="\n".join(lines) + "\n", max_bytes=next(iter(rules.values())).max_bytes)


def _ref(name: str, expr: _Expr) -> _Expr:
    return _Expr(name, expr.max_bytes)


def build_grammars(
    schemas: Sequence[ToolSchema],
    config: GrammarConfig = GrammarConfig(),
    integer_arrays: bool = True,
    thinking_tag: str = "thinking",
) -> TurnGrammars:
    """The grammar of every turn kind. ``schemas``: the enabled tools (empty: the action turn can only answer).

    ``integer_arrays``: array items (the magnifier's box) are integers — Qwen3-VL's 0–1000 grid and pixel
    coordinates are integers; unit coordinates are not. ``thinking_tag``: the reasoning tag every turn opens with.
    """
    text = _free_text(config.max_thinking_chars, newlines=True)
    thinking = _seq(_lit(f"<{thinking_tag}>"), text, _lit(f"</{thinking_tag}>"))
    gap = _chars("[ \\n]", 0, config.max_gap_chars) if config.max_gap_chars else _lit("")
    score = _decimal(Fraction(str(config.min_score)), Fraction(str(config.max_score)), config.score_decimals)
    answer = _seq(_lit("<answer>"), _ref("score", score), _lit("</answer>"))
    lines = [
        _seq(
            _lit(f"{attribute.name}: "),
            _alt(*(_lit(level) for level in attribute.levels)),
            *(
                (_lit(" - "), _ref("note", _free_text(config.max_note_chars, newlines=False)))
                if config.max_note_chars
                else ()
            ),
        )
        for attribute in config.rubric
    ]
    body = [lines[0], *(_seq(_lit("\n"), line) for line in lines[1:])]
    rubric_answer = _seq(_lit("<answer>\n"), *body, _lit("\n</answer>"))
    note = _free_text(config.max_note_chars, newlines=False)
    head = _ref("thinking", thinking)
    final = _grammar(root=_seq(head, gap, _ref("answer", answer)), thinking=thinking, answer=answer, score=score)
    if schemas:
        call = _tool_call(schemas, integer_arrays, config)
        action_root = _seq(head, gap, _alt(_ref("tool_call", call), _ref("answer", answer)))
        action = _grammar(root=action_root, thinking=thinking, tool_call=call, answer=answer, score=score)
    else:
        action = final
    notes = {"note": note} if config.max_note_chars else {}
    rubric = _grammar(root=_seq(head, gap, rubric_answer), thinking=thinking, **notes)
    return TurnGrammars(rubric=rubric, action=action, final=final)


def turn_grammar(
    kind: TurnKind, toolkit: Toolkit, protocol: ProtocolConfig, config: GrammarConfig = GrammarConfig()
) -> str:
    """The EBNF of a ``kind`` turn under ``protocol`` with ``toolkit``'s tools (the rollout's entry point)."""
    schemas = [toolkit.tool(name).schema() for name in toolkit.names] if protocol.tools_on else []
    integer_arrays = protocol.magnifier.coords != "unit"
    grammars = build_grammars(schemas, config, integer_arrays=integer_arrays, thinking_tag=protocol.thinking_tag)
    return grammars.for_kind(kind).ebnf
