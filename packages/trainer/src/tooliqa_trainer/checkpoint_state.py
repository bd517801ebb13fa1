"""What a GRPO checkpoint holds besides Lightning's own state, in plain types (``torch.load(weights_only=True)``,
Lightning's default, loads nothing else): the hyperparameters as plain dicts and the random-number states."""

from __future__ import annotations

import dataclasses
import random

import torch

__all__ = ["plain", "restore_rng", "rng_state", "rank_rng_state"]


def plain(value):
    """Dataclasses → dicts, tuples → lists, recursively (for a checkpoint that loads with weights_only=True)."""
    if dataclasses.is_dataclass(value):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def rng_state() -> dict:
    """torch's and Python's generator states (and CUDA's, where there is one), as plain types and tensors."""
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def rank_rng_state(saved, rank: int, world_size: int) -> dict | None:
    """This rank's entry of the per-rank states a checkpoint holds (``[rank 0's, rank 1's, …]``, as
    :func:`~tooliqa_trainer.ranks.every_rank` gathers them). A single state (a checkpoint written before the states
    were per rank) applies to every rank; when the world size changed the ranks cannot be matched up, so nothing is
    restored and every rank keeps its seeded generators."""
    if not isinstance(saved, list):
        return saved
    return saved[rank] if len(saved) == world_size else None


def restore_rng(state: dict | None) -> None:
    """Put back what :func:`rng_state` saved (None: a checkpoint without it, nothing to do)."""
    if state is None:
        return
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
