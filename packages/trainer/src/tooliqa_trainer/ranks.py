"""What changes with several ranks: gathering plain values, per-rank state in checkpoints, DeepSpeed's settings.

Every rank runs the same module; the few values that differ per rank or must be whole-batch go through here.
"""

from __future__ import annotations

import torch

__all__ = ["accumulation_boundary", "deepspeed_settings", "every_rank", "own_entry"]


def every_rank(value) -> list:
    """``[value of rank 0, value of rank 1, …]`` on every rank (``[value]`` without torch.distributed). A collective:
    every rank must call it at the same point."""
    if not torch.distributed.is_initialized():
        return [value]
    values: list = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(values, value)
    return values


def own_entry(saved, rank: int, world_size: int):
    """This rank's value of a per-rank counter saved as :func:`every_rank` wrote it (e.g. an engine's seed counter).

    A single value (a checkpoint written before counters were per rank) applies to every rank; when the world size
    changed the ranks cannot be matched up, so every rank takes the largest counter (no rank replays a seed any rank
    already used)."""
    if not isinstance(saved, list):
        return saved
    if len(saved) == world_size:
        return saved[rank]
    counters = [value for value in saved if value is not None]
    return max(counters) if counters else None


def deepspeed_settings(trainer, grad_clip: float) -> None:
    """Fill the DeepSpeed config with what the module owns before Lightning formats it (the module's ``setup`` hook:
    Lightning formats it on entering ``model_sharded_context``, around ``configure_model``); a no-op for other
    strategies.

    * ``gradient_clipping`` = ``optim.grad_clip``: under DeepSpeed ``clip_gradients`` does nothing (DeepSpeed clips
      inside its step by this key, which Lightning fills from ``gradient_clip_val``, unset with manual optimization),
      so without it a DeepSpeed run would silently train unclipped; a config that says otherwise is refused.
    * ``train_micro_batch_size_per_gpu`` = 1 unless given: Lightning otherwise reads it from the training loader's
      batch sampler, which this project's loaders (one prepared batch per step) do not have. DeepSpeed uses it for
      throughput logging only: with manual optimization the module sizes its own micro-batches.
    """
    config = getattr(getattr(trainer, "strategy", None), "config", None)
    if not isinstance(config, dict):
        return
    clip = config.setdefault("gradient_clipping", grad_clip)
    if clip != grad_clip:
        raise ValueError(
            f"trainer.strategy's DeepSpeed config has gradient_clipping {clip} but model.optim.grad_clip is "
            f"{grad_clip}: DeepSpeed does the clipping, so set both to the same value (or drop gradient_clipping)"
        )
    config.setdefault("train_micro_batch_size_per_gpu", 1)


def accumulation_boundary(trainer, is_last: bool) -> None:
    """Under DeepSpeed (GAS = 1 with manual optimization), only the last micro-batch's backward may reduce.

    The policy is called directly, not through ``DeepSpeedEngine.forward``, so what that forward does first is
    done here: ZeRO's optimizer counts micro-steps there (deepspeed 0.19 ``engine.py`` ``forward`` →
    ``clear_backward_seen_flag``; ``zero/stage3.py``: micro-step 0 copies a gradient partition, later ones add).
    Without it ZeRO-3 kept only the last micro-batch's gradients (two CPU ranks: cosine 0.96 to the true update).
    Nothing to do without DeepSpeed."""
    engine = getattr(trainer.strategy, "deepspeed_engine", None)
    if engine is not None:
        engine.set_gradient_accumulation_boundary(is_last)
        if hasattr(engine.optimizer, "clear_backward_seen_flag"):
            engine.optimizer.clear_backward_seen_flag()
