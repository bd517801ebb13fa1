"""Credit assignment: which advantage each model token of a trajectory carries in the policy-gradient loss.

``"sequence"`` is the paper's (SPEC §5): every token of a trajectory carries its group advantage A_g. GRPO then
credits the gate's choice (answer now, or which tool) with the whole trajectory's noise: a Magnifier call whose
sampled score happened to miss looks like a bad call. ``"action"`` keeps A_g on the rubric note and on every score,
and gives each *decision* the advantage of its path instead. A trajectory's path lists its decisions in order, two
per action turn: the action (``answer`` or a tool's name), then the call's arguments (the Gamma Corrector's mode,
the Magnifier's box). The tokens of decision d carry

    A_d(g) = mean of A over the group's trajectories whose first d decisions are g's
           − mean of A over those whose first d − 1 decisions are g's

— a Monte-Carlo estimate of Q(s, a) − V(s) with the siblings that decided the same as the sample of Q (as GiGPO's
step-level groups, Feng et al. 2025, here keyed by the decision path, since the sampled rubric note makes exact
states rare): the same expectation as A_g, without the variance of the sampled score that follows the call. A
decision no sibling shared gets its own A_g less its parent's mean. A is affine in the reward within a group for both
estimators in ``tooliqa_trainer.advantages``, so these means are the advantages of the paths' mean rewards.
``"contrast"`` subtracts from each decision's credit its mean over the batch's images that took it: only what
differs between images is left (no common move of the calling rate — BATE's rate shaping included).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from tooliqa_agent.trajectory import Trajectory, Turn

__all__ = [
    "CREDITS",
    "action_credit",
    "action_name",
    "action_path",
    "contrast_credit",
    "decision_credits",
    "decision_levels",
    "make_credit",
    "sequence_credit",
]

ANSWER_TAG = "<answer>"
"""Opens the score in an action turn (``tooliqa_agent.grammar``); what follows it is the score, not a decision."""
ARGUMENTS_KEY = '"arguments"'
"""Follows the tool's name in a call (the Qwen3 layout the grammar enforces); what follows it are the arguments."""

Credit = Callable[[Sequence[Sequence[Trajectory]], Tensor, object], list[Tensor]]
"""``(groups [B][G], advantages [B, G], tokenizer) → one float [L] per trajectory, row-major``."""


def action_name(turn: Turn) -> str:
    """The action an action turn took: ``answer``, a tool's name, ``invalid_call`` or ``unfinished``."""
    if not turn.finished:
        return "unfinished"
    if turn.call is not None:
        return turn.call.name
    return "invalid_call" if turn.tried_tool else "answer"


def turn_positions(trajectory: Trajectory) -> list[Tensor]:
    """Positions in ``input_ids`` of each turn's generated tokens (``Turn.num_tokens`` of the ``loss_mask`` ones, in
    order): long ``[num_tokens]`` per turn."""
    positions = trajectory.loss_mask.nonzero().flatten()
    sizes = [turn.num_tokens for turn in trajectory.turns]
    if sum(sizes) != len(positions):
        raise ValueError(
            f"trajectory {trajectory.image_index}/{trajectory.sample_index}: its turns hold {sum(sizes)} generated "
            f"tokens but its loss_mask marks {len(positions)}"
        )
    return list(torch.split(positions, sizes))


def decision_levels(trajectory: Trajectory, tokenizer) -> list[tuple[Tensor, Tensor | None]]:
    """Per turn: its positions (:func:`turn_positions`) and long ``[num_tokens]``, what each token decides — 0 nothing
    (the score), 1 the action (answer, or which tool), 2 the tool's arguments — or None for a turn that decides
    nothing (the rubric note, the last round's forced answer). An answer's decision ends where ``<answer>`` has been written, a tool call's action where
    ``"arguments"`` has."""
    levels: list[tuple[Tensor, Tensor | None]] = []
    for turn, positions in zip(trajectory.turns, turn_positions(trajectory)):
        if turn.kind != "action":
            levels.append((positions, None))
            continue
        level = torch.ones(len(positions), dtype=torch.long)
        name = action_name(turn)
        if name == "answer" or turn.call is not None:
            marker, after = (ANSWER_TAG, 0) if name == "answer" else (ARGUMENTS_KEY, 2)
            level[_written_by(trajectory.input_ids[positions].tolist(), marker, tokenizer) :] = after
        levels.append((positions, level))
    return levels


def _written_by(ids: list[int], marker: str, tokenizer) -> int:
    """The length of the shortest prefix of ``ids`` whose text contains ``marker`` (all of them if none); a bisection,
    since a prefix that contains it stays containing it: log₂ of a long thinking turn's decodes, not one per token."""
    low, high = 0, len(ids)  # the prefix of length `high` contains it (or is everything), that of `low` does not
    if marker not in tokenizer.decode(ids):
        return len(ids)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if marker in tokenizer.decode(ids[:middle]) else (middle, high)
    return high


def action_path(trajectory: Trajectory) -> tuple[str, ...]:
    """Its action turns' choices, two entries each: the action (:func:`action_name`), then the call's arguments as
    canonical JSON (empty for an answer)."""
    path: list[str] = []
    for turn in trajectory.turns:
        if turn.kind == "action":
            path += [action_name(turn), turn.call.arguments_json if turn.call is not None else ""]
    return tuple(path)


def sequence_credit(groups: Sequence[Sequence[Trajectory]], advantages: Tensor, tokenizer) -> list[Tensor]:
    """Every token carries its trajectory's advantage (the paper's GRPO/GSPO)."""
    return [
        torch.full((len(t.input_ids),), float(advantages[b, g]))
        for b, group in enumerate(groups)
        for g, t in enumerate(group)
    ]


def decision_credits(groups: Sequence[Sequence[Trajectory]], advantages: Tensor) -> list[dict[tuple[str, ...], float]]:
    """Per image: each decision path its group took (a prefix of some :func:`action_path`, ≥ 1 entry) → its credit
    A_d, the mean advantage of the trajectories on it less that of the path one decision shorter."""
    out = []
    for b, group in enumerate(groups):
        paths = [action_path(t) for t in group]
        adv = advantages[b].to(torch.float32)
        prefixes = {path[:d] for path in paths for d in range(1, len(path) + 1)}
        out.append({p: _path_mean(adv, paths, p) - _path_mean(adv, paths, p[:-1]) for p in prefixes})
    return out


def action_credit(groups: Sequence[Sequence[Trajectory]], advantages: Tensor, tokenizer) -> list[Tensor]:
    """Decision tokens carry their decision path's credit (module docstring), every other token its trajectory's.

    Args:
        groups: ``[B][G]`` trajectories.
        advantages: ``[B, G]`` group advantages.
        tokenizer: decodes an action turn's tokens to find where its score or its arguments start.
    """
    return _on_decisions(groups, advantages, tokenizer, decision_credits(groups, advantages))


def contrast_credit(groups: Sequence[Sequence[Trajectory]], advantages: Tensor, tokenizer) -> list[Tensor]:
    """As :func:`action_credit`, each decision's credit less its mean over the batch's images (this rank's share of
    the global batch) that took that path:
    what is left says on which images a decision is better than on the others, not whether it is good everywhere
    (which moves the calling rate on every image alike; BATE's batch rate shaping cancels here too)."""
    credits = decision_credits(groups, advantages)
    for path in {p for image in credits for p in image}:
        taken = [image for image in credits if path in image]
        mean = sum(image[path] for image in taken) / len(taken)
        for image in taken:
            image[path] -= mean
    return _on_decisions(groups, advantages, tokenizer, credits)


def _on_decisions(groups, advantages: Tensor, tokenizer, credits: list[dict[tuple[str, ...], float]]) -> list[Tensor]:
    """Each trajectory's advantage on every token, then each decision's tokens overwritten with ``credits``."""
    out = sequence_credit(groups, advantages, tokenizer)
    for b, group in enumerate(groups):
        for g, t in enumerate(group):
            row, path = out[b * len(group) + g], action_path(t)
            depth = 0  # entries of the path decided before this turn
            for positions, level in decision_levels(t, tokenizer):
                if level is None:
                    continue
                for step in (1, 2):  # the action, then its arguments
                    row[positions[level == step]] = credits[b][path[: depth + step]]
                depth += 2
    return out


def _path_mean(advantages: Tensor, paths: list[tuple[str, ...]], prefix: tuple[str, ...]) -> float:
    """Mean of ``advantages`` ``[G]`` over the trajectories whose action path starts with ``prefix``."""
    return float(advantages[[g for g, path in enumerate(paths) if path[: len(prefix)] == prefix]].mean())


CREDITS: dict[str, Credit] = {"sequence": sequence_credit, "action": action_credit, "contrast": contrast_credit}
"""Credit assignments by config name (``grpo.credit``)."""


def make_credit(name: str) -> Credit:
    """The credit assignment ``name`` (a key of :data:`CREDITS`)."""
    if name not in CREDITS:
        raise ValueError(f"unknown credit assignment {name!r}; choose one of {sorted(CREDITS)}")
    return CREDITS[name]
