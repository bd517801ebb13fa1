"""``Trajectory``: one sampled assessment, the contract between the agent, the trainer and the evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from tooliqa_agent.types import TurnKind

if TYPE_CHECKING:
    from tooliqa_tools import ToolCall, ToolView


@dataclass(frozen=True)
class Turn:
    """One assistant turn and what the protocol made of it."""

    kind: TurnKind
    """"rubric" (the rubric note), "action" (tool call or answer) or "final" (must answer)."""
    text: str
    """The generated text, without the closing ``<|im_end|>``."""
    num_tokens: int
    """Generated tokens of the turn, the closing ``<|im_end|>`` included."""
    finished: bool
    """False when the turn ran out of ``max_new_tokens`` (the trajectory then ends as ``truncated``)."""
    call: ToolCall | None = None
    """The parsed tool call (also for a call that then failed to run or was refused); None if none parsed."""
    error: str | None = None
    """Why the turn's tool call failed or was refused (the reason shown to the model); None otherwise."""
    view: ToolView | None = None
    """The executed tool's view and its metadata (box, γ, description); None when nothing ran."""

    @property
    def tried_tool(self) -> bool:
        """The turn issued a tool call (valid or not)."""
        return self.call is not None or self.error is not None

    @property
    def tool_ok(self) -> bool:
        """The turn's tool call parsed and ran."""
        return self.view is not None


@dataclass
class Trajectory:
    """The full token sequence as the training forward sees it, plus everything the rewards and the eval need.

    Position ``t`` with ``loss_mask[t]`` was sampled from the logits at ``t - 1``; ``old_logprobs[t]`` is its
    engine logprob on the trainer's scale (raw logits / temperature).
    """

    input_ids: torch.Tensor
    """long [L]: the whole conversation, image runs expanded, ending with the last generated token."""
    loss_mask: torch.Tensor
    """bool [L]: True exactly on model-generated tokens (each turn's closing ``<|im_end|>`` included)."""
    old_logprobs: torch.Tensor
    """float [L]: the engine's logprob of ``input_ids[t]`` where ``loss_mask``, 0 elsewhere."""
    mm_token_type_ids: torch.Tensor
    """long [L]: 1 on ``<|image_pad|>``, 0 elsewhere (transformers ≥ 5.16 needs it with images)."""
    images: list[torch.Tensor]
    """uint8 [3, H, W] each, pre-sized: the original first, then the tool views in order."""
    image_grid_thw: torch.Tensor
    """long [n_images, 3]: each image's (t, h, w) patch grid; its run holds t·h·w/4 placeholders."""
    turns: list[Turn]
    """Every assistant turn in order."""
    score: float | None
    """The parsed final score in [1, 5]; None on failure."""
    failure: str | None
    """None, or ``"<code>: <detail>"`` with code one of truncated, no_action, no_number, bad_number, out_of_range,
    tool_after_last_round, vision_token."""
    image_index: int
    """Index of the image in the rollout batch."""
    sample_index: int
    """Index of the sample within its image's group."""
    prompt_length: int
    """Tokens of the first prompt (system/tools block + first user turn + ``<|im_start|>assistant\\n``)."""
    forced_mask: torch.Tensor | None = None
    """bool [L] or None: generated tokens the grammar forced (``Completion.forced``), inside ``loss_mask``; the
    trainer's loss and KL skip them (``collate``). None: nothing was forced."""
    generation_s: float = 0.0
    """Wall time of the batched generate calls this trajectory took part in."""
    tools_s: float = 0.0
    """Wall time of the batched tool runs this trajectory took part in."""
    total_s: float = 0.0
    """Wall time of the whole rollout call that produced it."""

    @property
    def num_turns(self) -> int:
        """Assistant turns."""
        return len(self.turns)

    @property
    def num_tool_calls(self) -> int:
        """Turns that issued a tool call, valid or not (refused calls included)."""
        return sum(t.tried_tool for t in self.turns)

    @property
    def num_successful_calls(self) -> int:
        """Tool calls that parsed and ran."""
        return sum(t.tool_ok for t in self.turns)

    @property
    def num_failed_calls(self) -> int:
        """Tool calls that did not parse, failed to run, or were refused."""
        return self.num_tool_calls - self.num_successful_calls

    @property
    def num_output_tokens(self) -> int:
        """Model-generated tokens."""
        return int(self.loss_mask.sum())

    def render(self, tokenizer) -> str:
        """The conversation as text, each image run collapsed to one ``<|image_pad|>`` (for reading, not training)."""
        ids = self.input_ids.tolist()
        image_mask = self.mm_token_type_ids.tolist()
        kept = [tok for i, tok in enumerate(ids) if not (image_mask[i] and i > 0 and image_mask[i - 1])]
        return tokenizer.decode(kept)
