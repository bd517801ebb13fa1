"""From trajectories to model inputs: the trainer's right-padded batch, and vLLM's one-placeholder-per-image prompt."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch

from tooliqa_agent.trajectory import Trajectory
from tooliqa_agent.types import GenerationRequest
from tooliqa_agent.vision import image_inputs


@dataclass(frozen=True)
class PolicyBatch:
    """Right-padded inputs of a teacher-forced forward over N trajectories (L = the longest one).

    The logit at position ``t - 1`` scores ``input_ids[t]``: gather the logprobs from ``logits[:, :-1]`` against
    ``input_ids[:, 1:]`` and weight them with ``loss_mask[:, 1:]``.
    """

    input_ids: torch.Tensor
    """long [N, L], right-padded with the pad id."""
    attention_mask: torch.Tensor
    """long [N, L], 1 on real tokens."""
    mm_token_type_ids: torch.Tensor
    """long [N, L], 1 on ``<|image_pad|>``."""
    pixel_values: torch.Tensor
    """float [Σ patches, 3·2·16²]: every trajectory's images, trajectory by trajectory, in order of appearance."""
    image_grid_thw: torch.Tensor
    """long [n_images, 3], rows in the same order as ``pixel_values``."""
    loss_mask: torch.Tensor
    """bool [N, L], True on model-generated tokens."""
    old_logprobs: torch.Tensor
    """float [N, L], the engine's logprobs on generated tokens, 0 elsewhere."""

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> PolicyBatch:
        """Move every tensor to ``device``; ``dtype`` (the model's) applies to ``pixel_values`` only."""
        moved = {f.name: getattr(self, f.name).to(device) for f in fields(self)}
        if dtype is not None:
            moved["pixel_values"] = moved["pixel_values"].to(dtype)
        return PolicyBatch(**moved)

    def model_inputs(self) -> dict[str, torch.Tensor]:
        """Keyword arguments for ``model(**batch.model_inputs())``."""
        names = ("input_ids", "attention_mask", "mm_token_type_ids", "pixel_values", "image_grid_thw")
        return {name: getattr(self, name) for name in names}


def collate(trajectories: Sequence[Trajectory], processor, pad_id: int | None = None) -> PolicyBatch:
    """Right-pad ``trajectories`` into one :class:`PolicyBatch` (pixels computed by the processor, on CPU)."""
    if not trajectories:
        raise ValueError("collate: no trajectories")
    pad = processor.tokenizer.pad_token_id if pad_id is None else pad_id
    n, length = len(trajectories), max(len(t.input_ids) for t in trajectories)
    input_ids = torch.full((n, length), pad, dtype=torch.long)
    attention_mask = torch.zeros((n, length), dtype=torch.long)
    mm_token_type_ids = torch.zeros((n, length), dtype=torch.long)
    loss_mask = torch.zeros((n, length), dtype=torch.bool)
    old_logprobs = torch.zeros((n, length), dtype=torch.float32)
    for row, t in enumerate(trajectories):
        size = len(t.input_ids)
        input_ids[row, :size] = t.input_ids
        attention_mask[row, :size] = 1
        mm_token_type_ids[row, :size] = t.mm_token_type_ids
        # text the grammar forced is no decision of the policy: its constrained log-prob is 0, so no loss, no KL
        loss_mask[row, :size] = t.loss_mask if t.forced_mask is None else t.loss_mask & ~t.forced_mask
        old_logprobs[row, :size] = t.old_logprobs
    images = [image.cpu() for t in trajectories for image in t.images]
    pixel_values, grid = image_inputs(images, processor)
    expected = torch.cat([t.image_grid_thw for t in trajectories])
    if not torch.equal(grid, expected.cpu()):
        raise ValueError("collate: a trajectory's image_grid_thw disagrees with its images")
    return PolicyBatch(input_ids, attention_mask, mm_token_type_ids, pixel_values, grid, loss_mask, old_logprobs)


def vllm_prompt(item: Trajectory | GenerationRequest, image_token_id: int) -> tuple[list[int], list[torch.Tensor]]:
    """(token ids with each image's placeholder run collapsed to ONE ``<|image_pad|>``, the images in order).

    vLLM expands each placeholder itself; an expanded run would be expanded again and silently corrupt the prompt
    (SPEC §6). Runs of different images are always separated by ``<|vision_end|><|vision_start|>``, so collapsing
    consecutive placeholders never merges two images.
    """
    if isinstance(item, Trajectory):
        ids, images = item.input_ids.tolist(), list(item.images)
    else:
        ids, images = list(item.prompt_ids), list(item.images)
    collapsed = [tok for i, tok in enumerate(ids) if tok != image_token_id or i == 0 or ids[i - 1] != image_token_id]
    runs = sum(tok == image_token_id for tok in collapsed)
    if runs != len(images):
        raise ValueError(f"vllm_prompt: {runs} placeholder runs but {len(images)} images")
    return collapsed, images
