"""An :class:`~tooliqa_agent.Agent` as the data package's ``Assessor``: training-time validation and
``apps/eval.py`` score images through this one adapter, so their numbers are comparable."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import torch

from tooliqa_agent.rollout import Agent
from tooliqa_agent.trajectory import Trajectory
from tooliqa_agent.types import SamplingConfig
from tooliqa_agent.vision import presized_shape
from tooliqa_data import OK, PARSE_FAILURE, AssessedCall, AssessedTurn, Assessment, IQAItem, encode_png
from tooliqa_trainer.readout import READOUTS, ReadoutContext

__all__ = ["UNUSABLE_IMAGE", "AgentAssessor", "to_assessment"]

UNUSABLE_IMAGE = "unusable_image"
"""Status of an image that decoded but that the model cannot take (the processor refuses its shape): not retried."""


class AgentAssessor:
    """Callable ``(items, images) -> list[Assessment]``: one trajectory per image (greedy by default), or ``samples``
    sampled trajectories per image read out as one score (``tooliqa_trainer.readout``: their mean parsed score, or
    the probability-weighted score; a soft policy whose argmax is the same for every image can still rank images)."""

    def __init__(
        self,
        agent: Agent,
        sampling: SamplingConfig = SamplingConfig(temperature=0.0),  # noqa: B008 (frozen)
        views: bool = False,
        samples: int = 1,
        readout: str = "sampled",
        model: torch.nn.Module | None = None,
        also_readouts: Sequence[str] = (),
    ):
        """
        Args:
            agent: the rollout agent (policy engine + protocol).
            sampling: how the trajectories are sampled.
            views: keep each tool view as PNG bytes in the assessment (for HTML reports; costs encode time).
            samples: trajectories per image (the first trajectory's turns and tool calls are kept as the record).
            readout: a :data:`~tooliqa_trainer.readout.READOUTS` name: "sampled" or "expected".
            model: the policy module for the "expected" readout (default: the engine's model, as the hf engine has).
            also_readouts: more readouts of the same trajectories, kept in each assessment's ``other_scores``.
        """
        if samples < 1 or (samples > 1 and sampling.temperature == 0):
            raise ValueError(f"AgentAssessor: samples must be ≥ 1, and > 1 needs temperature > 0 (got {samples})")
        for name in (readout, *also_readouts):
            if name not in READOUTS:
                raise ValueError(f"AgentAssessor: unknown readout {name!r}; known: {sorted(READOUTS)}")
        model = model if model is not None else getattr(agent.engine, "model", None)
        if "expected" in (readout, *also_readouts) and not isinstance(model, torch.nn.Module):
            raise ValueError(
                f"AgentAssessor: readout 'expected' needs the policy as a torch module; the "
                f"{type(agent.engine).__name__} engine has none (use the hf engine)"
            )
        self.agent = agent
        self.sampling = sampling
        self.views = views
        self.samples = samples
        self.readout = READOUTS[readout]
        self.also_readouts = {name: READOUTS[name] for name in also_readouts}
        grammar = agent.protocol.grammar
        self.context = ReadoutContext(model, agent.processor, grammar.min_score, grammar.max_score)

    def __call__(self, items: Sequence[IQAItem], images: Sequence[torch.Tensor]) -> list[Assessment]:
        # An image the model cannot take (e.g. an aspect ratio the processor refuses) is its own error row, named by
        # its file; its batch-mates are assessed as usual.
        names = [str(item.image) for item in items] if items is not None else [f"image {i}" for i in range(len(images))]
        unusable = {i: self._unusable(name, image) for i, (name, image) in enumerate(zip(names, images))}
        unusable = {i: reason for i, reason in unusable.items() if reason is not None}
        usable = [i for i in range(len(images)) if i not in unusable]
        # per-image seeds from the image's identity (dataset + name under its root, so not where the dataset
        # lies): its scores do not depend on its batch, a resume, the rank or the folder the data was copied to
        keys = [f"{item.dataset}/{item.name or item.image}" for item in items] if items is not None else None
        usable_keys = None if keys is None else [keys[i] for i in usable]
        assessed = iter(self._assess([images[i] for i in usable], usable_keys) if usable else [])
        return [
            Assessment(score=None, status=UNUSABLE_IMAGE, detail=unusable[i]) if i in unusable else next(assessed)
            for i in range(len(images))
        ]

    def _unusable(self, name: str, image: torch.Tensor) -> str | None:
        # geometry only (no pixels are resized twice): the shape pre-sizing gives must be one the processor keeps
        processor = self.agent.processor
        try:
            shape = presized_shape(int(image.shape[-2]), int(image.shape[-1]), processor)
            if presized_shape(*shape, processor) != shape:
                raise ValueError(f"{tuple(image.shape[-2:])} cannot be sized inside the processor's pixel bounds")
        except ValueError as err:
            return f"{name}: {err}"
        return None

    def _assess(self, images: Sequence[torch.Tensor], keys: Sequence[str] | None) -> list[Assessment]:
        start = time.perf_counter()
        with torch.no_grad():
            groups = self.agent.rollout(list(images), self.samples, self.sampling, keys=keys)
            scores = self.readout(groups, self.context)
            others = {name: readout(groups, self.context) for name, readout in self.also_readouts.items()}
        seconds = (time.perf_counter() - start) / max(1, len(images))
        assessments = [to_assessment(group[0], seconds, self.views) for group in groups]
        out = []
        for index, (a, score) in enumerate(zip(assessments, scores)):
            if score != a.score:
                a = dataclasses.replace(a, score=score, status=OK if score is not None else PARSE_FAILURE)
            if others:
                a = dataclasses.replace(a, other_scores=tuple((name, s[index]) for name, s in others.items()))
            out.append(a)
        return out


def to_assessment(trajectory: Trajectory, seconds: float, views: bool = False) -> Assessment:
    """The evaluation record of one trajectory (score, status, tokens, tool calls, turns)."""
    # The agent's failure codes (truncated, no_action, no_number, ...) are all a missing score: parse_failure, with
    # the code and detail kept in ``detail``.
    status = OK if trajectory.score is not None else PARSE_FAILURE
    calls = []
    for turn in trajectory.turns:
        if not turn.tried_tool:
            continue
        view = turn.view
        calls.append(
            AssessedCall(
                name=turn.call.name if turn.call is not None else "",
                arguments_json=turn.call.arguments_json if turn.call is not None else "",
                ok=turn.tool_ok,
                box=None if view is None or view.box is None else tuple(view.box),
                gamma=None if view is None else view.gamma,
                error=turn.error,
            )
        )
    turns = tuple(
        AssessedTurn(
            kind=turn.kind, text=turn.text, view_png=encode_png(turn.view.image) if views and turn.view else None
        )
        for turn in trajectory.turns
    )
    return Assessment(
        score=trajectory.score,
        status=status,
        output_tokens=trajectory.num_output_tokens,
        tool_calls=tuple(calls),
        turns=turns,
        seconds=seconds,
        detail=trajectory.failure,
    )
