"""Forced turns for the ``hf`` engine: make the model emit given texts while keeping its own logprobs.

A :class:`ForcedTurns` is a ``ConstraintFactory``: it masks every token but the scripted one at each step, so the
engine records the model's real raw-logit logprobs of a text the model would not write by itself. Uses: driving an
untrained or random model through tool calls (tests, the GPU benchmark at 8B shapes), and re-scoring recorded
trajectories with the engine's exact code path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from tooliqa_agent.types import GenerationRequest


class _ForceTokens:
    """Logits processor: row ``i`` may only emit ``forced[i][step]`` while its script lasts (then it runs free)."""

    def __init__(self, forced: list[list[int] | None], prompt_length: int) -> None:
        self.forced = forced
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = input_ids.shape[1] - self.prompt_length
        rows = [i for i, ids in enumerate(self.forced) if ids is not None and step < len(ids)]
        if not rows:
            return scores
        index = torch.tensor(rows, device=scores.device)
        tokens = torch.tensor([self.forced[i][step] for i in rows], device=scores.device)
        allowed = torch.zeros_like(scores, dtype=torch.bool)
        allowed[index, tokens] = True
        forced_rows = torch.zeros(scores.shape[0], 1, dtype=torch.bool, device=scores.device)
        forced_rows[index] = True
        return torch.where(forced_rows & ~allowed, float("-inf"), scores)  # a new tensor: raw logits stay intact


class ForcedTurns:
    """Force ``texts[(trajectory, turn)]`` followed by ``<|im_end|>``; unscripted turns are sampled freely."""

    def __init__(self, tokenizer, texts: Mapping[tuple[int, int], str]) -> None:
        im_end = int(tokenizer.convert_tokens_to_ids("<|im_end|>"))
        self.forced = {key: tokenizer.encode(text, add_special_tokens=False) + [im_end] for key, text in texts.items()}

    def __call__(self, requests: Sequence[GenerationRequest], prompt_length: int) -> _ForceTokens | None:
        rows = [self.forced.get((r.trajectory, r.turn)) for r in requests]
        if all(row is None for row in rows):
            return None
        return _ForceTokens(rows, prompt_length)
