"""What the evaluation runner asks of a model: the :class:`Assessor` protocol and the :class:`Assessment` it returns.

The runner knows nothing about agents, engines or prompts: anything callable as
``assessor(items, images) -> list[Assessment]`` can be evaluated (the trainer package wraps the Tool-IQA agent;
tests use a sharpness measure). Tool calls and turns are plain records, so the outputs (predictions.csv,
trajectories.jsonl, the tool tables and the HTML report) are built from them alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch

from tooliqa_data.items import IQAItem

OK = "ok"
"""Status of an assessment that produced a score."""
PARSE_FAILURE = "parse_failure"
"""Status of an assessment whose final answer held no readable score (score is ``None``)."""


@dataclass(frozen=True)
class AssessedCall:
    """One tool call the model issued while assessing an image."""

    name: str
    """Tool name as called (``"magnifier"``, ``"gamma_corrector"``, or whatever the model wrote)."""
    arguments_json: str
    """The call's arguments as canonical JSON (``"{}"`` when they could not be parsed)."""
    ok: bool
    """True when the call parsed and ran (a view was returned)."""
    box: tuple[int, int, int, int] | None = None
    """Magnifier: the pixel box actually cropped from the original ``(x1, y1, x2, y2)``."""
    gamma: float | None = None
    """Gamma corrector: the γ applied."""
    error: str | None = None
    """Why the call failed (the failure prompt the model saw)."""


@dataclass(frozen=True)
class AssessedTurn:
    """One turn of the conversation, for trajectories.jsonl and the HTML report."""

    kind: str
    """``"rubric"``, ``"action"`` or ``"final"`` for model turns; ``"tool"`` for a tool response."""
    text: str
    """The turn's text (model output, or the observation / failure prompt of a tool turn)."""
    view_png: bytes | None = None
    """PNG bytes of the tool view this turn showed (``tooliqa_data.encode_png`` makes them), else ``None``."""


@dataclass(frozen=True)
class Assessment:
    """The result of assessing one image."""

    score: float | None
    """Predicted quality (higher = better), ``None`` when no score could be read."""
    status: str = OK
    """``"ok"``, ``"parse_failure"``, or another short tag an assessor defines (e.g. ``"max_tokens"``)."""
    output_tokens: int = 0
    """Tokens the model generated for this image, all turns together."""
    tool_calls: tuple[AssessedCall, ...] = ()
    """Tool calls in the order issued."""
    turns: tuple[AssessedTurn, ...] = ()
    """The conversation's turns in order (may be empty for assessors without one)."""
    seconds: float = 0.0
    """Wall-clock seconds spent on this image (0: the runner splits the batch's time evenly)."""
    detail: str | None = None
    """Free-text detail for non-ok statuses (e.g. the unparsable answer)."""
    other_scores: tuple[tuple[str, float | None], ...] = ()
    """The same trajectories read out in other ways, ``(readout name, score)`` (e.g. the probability-weighted
    score beside the written one)."""


@runtime_checkable
class Assessor(Protocol):
    """Scores a batch of images: ``images[i]`` is ``items[i]``'s image as ``uint8 [3, H, W]`` (uint16 for 16-bit
    files; sizes may differ).

    Must return exactly one :class:`Assessment` per item, in order. Raising fails the whole batch: its rows are
    written as ``assessor_error`` and retried by the next (resumed) run.
    """

    def __call__(self, items: Sequence[IQAItem], images: Sequence[torch.Tensor]) -> list[Assessment]: ...


@dataclass(frozen=True)
class RunMetadata:
    """What produced the predictions, recorded in metrics.json and checked when a run is resumed."""

    model: str = ""
    """Checkpoint path or hub id (the row label of table.md)."""
    seed: int = 0
    """Seed of the model's sampling."""
    settings: Mapping[str, str | int | float | bool | None] = field(default_factory=dict)
    """Sampling, protocol and engine settings (temperature, top_p, tools, rubric, engine, dtype, device, ...)."""
    weights: Mapping[str, str] = field(default_factory=dict)
    """Fingerprint of the weights scored, ``tensor name → digest of its bytes`` (``tooliqa_trainer.weights``);
    a resume over other weights is refused naming the tensors that differ. Empty: not fingerprinted (a hub id)."""
