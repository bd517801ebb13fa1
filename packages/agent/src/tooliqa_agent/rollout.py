"""``Agent``: runs the protocol for B images × G samples, turn by turn, batched.

All live trajectories advance together: one ``engine.generate`` per turn over every trajectory still running (finished
ones drop out), then ONE batched ``Toolkit.run`` for every tool call of that turn, on the engine's device.

The model's first view is the original pre-sized into the processor's pixel bounds; the tools always work on the
full-resolution original (SPEC §3), and each tool plans its view inside the same bounds in one resize, so a magnified
view holds detail the pre-sized global view has averaged away and no view is ever resized twice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch

from tooliqa_agent.chat import ChatTokens
from tooliqa_agent.protocol import Finish, ProtocolConfig, ProtocolState, Reply, RunTool, advance
from tooliqa_agent.seeding import sample_seed
from tooliqa_agent.trajectory import Trajectory, Turn
from tooliqa_agent.types import Completion, Engine, GenerationRequest, SamplingConfig, TurnKind
from tooliqa_agent.vision import image_grid, pixel_bounds, prepare_image
from tooliqa_tools import ToolCall, ToolView, to_uint8
from tooliqa_tools.ops.depth import check_original


@dataclass
class _Live:
    """A trajectory under construction."""

    image_index: int
    sample_index: int
    state: ProtocolState
    ids: list[int]
    images: list[torch.Tensor]
    prompt_length: int
    mask: list[bool] = field(default_factory=list)
    forced: list[bool] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    outcome: Finish | None = None
    pending: RunTool | None = None
    generation_s: float = 0.0
    tools_s: float = 0.0

    def __post_init__(self) -> None:
        self.forced = [False] * len(self.ids)
        self.mask = [False] * len(self.ids)
        self.logprobs = [0.0] * len(self.ids)

    def append(
        self,
        ids: Sequence[int],
        generated: bool,
        logprobs: Sequence[float] | None = None,
        forced: Sequence[bool] = (),
    ) -> None:
        self.forced.extend(forced if forced else [False] * len(ids))
        self.ids.extend(ids)
        self.mask.extend([generated] * len(ids))
        self.logprobs.extend(logprobs if logprobs is not None else [0.0] * len(ids))


class Agent:
    """The Tool-IQA assessor over any :class:`~tooliqa_agent.types.Engine`."""

    def __init__(self, engine: Engine, processor, protocol: ProtocolConfig | None = None) -> None:
        self.engine = engine
        self.processor = processor
        self.protocol = protocol = protocol if protocol is not None else ProtocolConfig()
        self.toolkit = replace(protocol, **_views_inside(protocol, processor)).make_toolkit()
        self.chat = ChatTokens(processor, self.toolkit.schemas() if protocol.tools_on else None)
        self._first = self.chat.first_prompt(protocol.prompts.first_user(protocol.rubric, protocol.tools_on))
        self._grammars: dict[TurnKind, str] = {}
        vision = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
        self._vision_ids = frozenset(int(processor.tokenizer.convert_tokens_to_ids(token)) for token in vision)

    def prepare_image(self, image: torch.Tensor) -> torch.Tensor:
        """The global view of an original uint8 or uint16 [3, H, W]: 8-bit, multiples of 32 within the processor's
        pixel bounds."""
        return prepare_image(to_uint8(check_original(image, "the original")), self.processor)

    def _grammar(self, kind: TurnKind) -> str | None:
        if not self.protocol.structured:
            return None
        if kind not in self._grammars:
            from tooliqa_agent.grammar import turn_grammar  # xgrammar-facing code only when asked for

            self._grammars[kind] = turn_grammar(kind, self.toolkit, self.protocol, self.protocol.grammar)
        return self._grammars[kind]

    def rollout(
        self,
        images: Sequence[torch.Tensor],
        group_size: int,
        sampling: SamplingConfig,
        keys: Sequence[str] | None = None,
    ) -> list[list[Trajectory]]:
        """Assess every image ``group_size`` times: trajectories ``[B][G]``.

        ``images``: uint8 or uint16 [3, H, W] originals of any size, at full resolution and depth: the model's global
        view is pre-sized (and 8-bit) here, the tools work on these pixels. Bad input raises ``ValueError`` naming the
        image; a bad model output never raises: it ends that trajectory with a ``failure``.

        ``keys``: one stable identity per image (evaluation: ``"<dataset>/<name under its root>"``). Each turn then samples with
        :func:`~tooliqa_agent.seeding.sample_seed` of its image, sample and turn, so an image's trajectories do not
        depend on its batch-mates, their order, a resume or the rank. None: the engine's per-call seeds (training).
        """
        if group_size < 1:
            raise ValueError(f"group_size must be ≥ 1, got {group_size}")
        if keys is not None and len(keys) != len(images):
            raise ValueError(f"rollout: {len(keys)} keys for {len(images)} images")
        start = time.perf_counter()
        device = self.engine.device
        originals, global_views = [], []
        for b, image in enumerate(images):
            try:
                original = image.to(device)
                global_views.append(self.prepare_image(original))
            except ValueError as err:
                raise ValueError(f"image {b}: {err}") from None
            originals.append(original)
        live = []
        for b, view in enumerate(global_views):
            first = self.chat.expand(self._first, [view])
            for g in range(group_size):
                live.append(_Live(b, g, ProtocolState.start(self.protocol), list(first), [view], len(first)))
        while active := [t for t in live if t.outcome is None]:
            self._generate_turn(active, live, sampling, keys)
            self._run_tools(active, originals)
        total = time.perf_counter() - start
        done = [self._finish(t, total) for t in live]
        return [done[b * group_size : (b + 1) * group_size] for b in range(len(originals))]

    def _generate_turn(
        self, active: list[_Live], live: list[_Live], sampling: SamplingConfig, keys: Sequence[str] | None
    ) -> None:
        index = {id(t): i for i, t in enumerate(live)}
        requests = [
            GenerationRequest(
                prompt_ids=tuple(t.ids),
                images=tuple(t.images),
                grammar=self._grammar(t.state.kind),
                kind=t.state.kind,
                trajectory=index[id(t)],
                turn=len(t.turns),
                seed=None
                if keys is None
                else sample_seed(sampling.seed, keys[t.image_index], t.sample_index, len(t.turns)),
            )
            for t in active
        ]
        tick = time.perf_counter()
        completions = self.engine.generate(requests, sampling)
        elapsed = time.perf_counter() - tick
        if len(completions) != len(requests):
            raise RuntimeError(f"engine returned {len(completions)} completions for {len(requests)} requests")
        for t, completion in zip(active, completions, strict=True):
            t.generation_s += elapsed
            self._apply(t, completion)

    def _apply(self, t: _Live, completion: Completion) -> None:
        """Append the turn's ids verbatim, then the protocol's answer to it (a reply turn, a pending tool, or the end)."""
        kind = t.state.kind
        cut = next((i for i, token in enumerate(completion.token_ids) if token in self._vision_ids), None)
        if cut is not None:  # an image slot the engine generated would break every later forward: stop before it
            forced = completion.forced[:cut]
            t.append(completion.token_ids[:cut], generated=True, logprobs=completion.logprobs[:cut], forced=forced)
            text = self.processor.tokenizer.decode(completion.token_ids[:cut])
            t.turns.append(Turn(kind, text, cut, finished=False))
            t.outcome = Finish(None, "vision_token: the engine generated an image/vision placeholder token")
            return
        t.append(completion.token_ids, generated=True, logprobs=completion.logprobs, forced=completion.forced)
        outcome = advance(t.state, completion.text, completion.finished, self.protocol, self.toolkit)
        turn = Turn(kind, completion.text, len(completion.token_ids), completion.finished)
        if isinstance(outcome, Finish):
            t.outcome = outcome
        elif isinstance(outcome, Reply):
            turn = Turn(kind, turn.text, turn.num_tokens, turn.finished, call=outcome.call, error=outcome.error)
            t.append(self.chat.next_turn(outcome.role, outcome.text, image=False), generated=False)
        else:
            turn = Turn(kind, turn.text, turn.num_tokens, turn.finished, call=outcome.call)
            t.pending = outcome
        t.turns.append(turn)

    def _run_tools(self, active: list[_Live], originals: list[torch.Tensor]) -> None:
        """Every tool call of this turn in ONE batched ``Toolkit.run`` on the full-resolution originals; views (or
        failures) become the next user turn."""
        calling = [t for t in active if t.pending is not None]
        if not calling:
            return
        calls: list[ToolCall] = [t.pending.call for t in calling]
        tick = time.perf_counter()
        results = self.toolkit.run([originals[t.image_index] for t in calling], calls)
        elapsed = time.perf_counter() - tick
        prompts = self.protocol.prompts
        for t, result in zip(calling, results, strict=True):
            remaining = t.pending.remaining
            t.pending = None
            t.tools_s += elapsed
            last = t.turns[-1]
            if isinstance(result, ToolView):
                view = result.image.contiguous()
                image_grid(view, self.processor)  # planned inside the processor's bounds: never resized again
                t.turns[-1] = Turn(last.kind, last.text, last.num_tokens, last.finished, call=last.call, view=result)
                ids = self.chat.next_turn("tool", prompts.observation_text(result.description, remaining), image=True)
                t.images.append(view)
                t.append(self.chat.expand(ids, [view]), generated=False)
            else:
                reason = str(result)
                t.turns[-1] = Turn(last.kind, last.text, last.num_tokens, last.finished, call=last.call, error=reason)
                t.append(
                    self.chat.next_turn("tool", prompts.failure_text(reason, remaining), image=False), generated=False
                )

    def _finish(self, t: _Live, total_s: float) -> Trajectory:
        ids = torch.tensor(t.ids, dtype=torch.long)
        grid = torch.tensor([image_grid(image, self.processor) for image in t.images], dtype=torch.long)
        return Trajectory(
            input_ids=ids,
            loss_mask=torch.tensor(t.mask, dtype=torch.bool),
            old_logprobs=torch.tensor(t.logprobs, dtype=torch.float32),
            mm_token_type_ids=(ids == self.chat.image_token_id).long(),
            images=t.images,
            image_grid_thw=grid.reshape(-1, 3),
            forced_mask=torch.tensor(t.forced, dtype=torch.bool) if any(t.forced) else None,
            turns=t.turns,
            score=t.outcome.score,
            failure=t.outcome.failure,
            image_index=t.image_index,
            sample_index=t.sample_index,
            prompt_length=t.prompt_length,
            generation_s=t.generation_s,
            tools_s=t.tools_s,
            total_s=total_s,
        )


def _views_inside(protocol: ProtocolConfig, processor) -> dict[str, object]:
    """The tools' configs with the processor's pixel bounds: its minimum, and the budget capped at its maximum."""
    low, high = pixel_bounds(processor)
    return {
        name: replace(config, min_pixels=low, max_pixels=min(config.max_pixels, high))
        for name, config in (("magnifier", protocol.magnifier), ("gamma", protocol.gamma))
    }
