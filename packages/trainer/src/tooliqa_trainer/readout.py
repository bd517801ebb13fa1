"""Score readouts: how an image's sampled trajectories become one predicted score.

* ``sampled`` — the mean of the parsed final scores (one trajectory: its score). What the paper reports.
* ``expected`` — the probability-weighted score (Q-Align's readout): each parsed score with its leading digit replaced
  by that digit's expectation under the policy, at the position where it was generated (teacher-forced over the
  trajectory's own tokens, renormalised over the leading digits the score range admits), then the mean over samples.
  A policy that shifts its score distribution by image while its samples still scatter ranks images by this number
  long before its samples do; integer scores (``score_decimals: 0``) are read exactly, decimals keep their sampled
  fraction. Needs the policy as a torch module (the ``hf`` engine's model).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch
from torch import nn

from tooliqa_agent.collate import collate
from tooliqa_agent.protocol import score_numeral
from tooliqa_agent.trajectory import Trajectory

__all__ = [
    "READOUTS",
    "Readout",
    "ReadoutContext",
    "digit_logits",
    "expected_scores",
    "leading_digit_position",
    "sampled_scores",
]

Readout = Callable[[Sequence[Sequence[Trajectory]], "ReadoutContext"], list[float | None]]
"""``(groups [B][G], context) -> [B]`` predicted scores (None: no valid sample)."""


class ReadoutContext:
    """What a readout may need besides the trajectories: the policy module, the processor, the score range."""

    def __init__(self, model: nn.Module | None, processor, min_score: float = 1.0, max_score: float = 5.0) -> None:
        self.model = model
        self.processor = processor
        self.digits = list(range(int(min_score), int(max_score) + 1))
        """Leading digits the score range admits (one token each: the range must lie within [0, 9])."""


def sampled_scores(groups: Sequence[Sequence[Trajectory]], context: ReadoutContext) -> list[float | None]:
    """Mean parsed score per image (None where no sample parsed)."""
    return [_mean([t.score for t in group if t.score is not None]) for group in groups]


def leading_digit_position(trajectory: Trajectory, tokenizer) -> int | None:
    """Index in ``input_ids`` of the final score's leading digit, or None.

    The score is found as the protocol parses it (the last ``<answer>`` block, its first number). None when the
    trajectory has no valid score, the number's integer part is not one digit (``05``, ``-1``), or the digit shares
    its token with other text (Qwen's tokenizers split numbers into single digits).
    """
    if trajectory.score is None:
        return None
    generated = torch.nonzero(trajectory.loss_mask).flatten().tolist()
    # the final turn is the last run of consecutive generated positions
    start = len(generated) - 1
    while start > 0 and generated[start - 1] == generated[start] - 1:
        start -= 1
    positions = generated[start:]
    pieces = [tokenizer.decode([int(trajectory.input_ids[p])]) for p in positions]
    text = "".join(pieces)
    located = score_numeral(text)  # where parse_score read the score
    if located is None or not re.fullmatch(r"\d(?:\.\d+)?", located[1]):
        return None
    start, numeral = located
    offset = 0
    for position, piece in zip(positions, pieces):
        if offset == start:
            return position if piece == numeral[0] else None
        offset += len(piece)
        if offset > start:
            return None
    return None


def digit_logits(
    model: nn.Module, trajectories: Sequence[Trajectory], positions: Sequence[int], processor, digits: Sequence[int]
) -> torch.Tensor:
    """Raw logits of the score's leading digits where each trajectory wrote its digit (teacher-forced over its own
    tokens; grad flows unless the caller disables it).

    Args:
        trajectories: n trajectories.
        positions: each one's :func:`leading_digit_position`.
        digits: the D leading digits the score range admits.

    Returns:
        ``[n, D]`` float logits (model dtype); logits are computed only at the n positions, not ``[n, L, V]``.
    """
    tokenizer = processor.tokenizer
    device = next(model.parameters()).device
    batch = collate(list(trajectories), processor, tokenizer.pad_token_id).to(device)
    kept, column = torch.unique(torch.tensor([p - 1 for p in positions], device=device), return_inverse=True)
    logits = model(**batch.model_inputs(), use_cache=False, logits_to_keep=kept).logits  # [n, K, V], K ≤ n
    digit_ids = torch.tensor([int(tokenizer.convert_tokens_to_ids(str(d))) for d in digits], device=device)
    return logits[torch.arange(len(positions), device=device), column][:, digit_ids]


@torch.no_grad()
def expected_scores(
    groups: Sequence[Sequence[Trajectory]], context: ReadoutContext, micro_batch: int = 16
) -> list[float | None]:
    """Mean probability-weighted score per image (None where no sample parsed). Shapes: the digit distribution
    ``[N, len(digits)]`` per micro-batch (:func:`digit_logits`)."""
    if context.model is None:
        raise ValueError("readout 'expected' needs the policy as a torch module (use the hf engine)")
    tokenizer = context.processor.tokenizer
    flat = [(b, t) for b, group in enumerate(groups) for t in group]
    located = [(b, t, leading_digit_position(t, tokenizer)) for b, t in flat]
    readable = [(b, t, p) for b, t, p in located if p is not None]
    per_image: list[list[float]] = [[] for _ in groups]
    for b, t, p in located:
        if p is None and t.score is not None:
            per_image[b].append(t.score)  # nothing to read out: keep the sampled score
    device = next(context.model.parameters()).device
    values = torch.tensor(context.digits, dtype=torch.float32, device=device)
    for k in range(0, len(readable), micro_batch):
        chunk = readable[k : k + micro_batch]
        logits = digit_logits(context.model, [t for _, t, _ in chunk], [p for _, _, p in chunk], context.processor,
                              context.digits)  # fmt: skip
        probabilities = logits.float().softmax(-1)  # [n, digits], temperature 1
        expectation = (probabilities * values).sum(-1).tolist()
        for (b, t, _), expected in zip(chunk, expectation):
            sampled_digit = int(t.score)  # the located number is the parsed score, integer part one digit
            per_image[b].append(t.score - sampled_digit + expected)
    return [_mean(scores) for scores in per_image]


READOUTS: dict[str, Readout] = {"sampled": sampled_scores, "expected": expected_scores}
"""Readouts by name (``ValidationConfig.readout``, ``apps/eval.py --readout``)."""


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None
