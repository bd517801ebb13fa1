"""Write a trained policy as an HF-format model directory that ``from_pretrained`` (and ``apps/eval.py --ckpt``)
loads: config, safetensors weights, generation config, and the processor (tokenizer, chat template, image settings).
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

__all__ = ["ExportHF", "export_hf"]


def export_hf(
    model: torch.nn.Module, processor, out_dir: str | os.PathLike, merge_lora: bool = True, zero3: bool = False
) -> Path:
    """Save ``model`` (+ ``processor``) to ``out_dir``.

    Args:
        model: the policy; a peft model is merged into plain weights when ``merge_lora`` (a copy: the policy itself
            keeps its adapters), else its adapters are saved alone (``adapter_config.json`` + weights, peft format).
        processor: the processor the policy was trained with.
        out_dir: target directory (created).
        zero3: the parameters are ZeRO-3 partitioned: every rank calls this (the weights are gathered one by one)
            and rank 0 writes.

    Returns:
        ``out_dir`` as a :class:`Path`.
    """
    out = Path(out_dir)
    if zero3:
        return _export_partitioned(model, processor, out, merge_lora)
    out.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "merge_and_unload") and merge_lora:
        import copy

        model = copy.deepcopy(model).merge_and_unload()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _export_partitioned(model: torch.nn.Module, processor, out: Path, merge_lora: bool) -> Path:
    """ZeRO-3: stream the gathered (LoRA-merged) weights to CPU on rank 0, then save them under the base config."""
    from tooliqa_trainer.policy import _base, engine_weights

    if hasattr(model, "merge_and_unload") and not merge_lora:
        raise ValueError("export under ZeRO-3 saves merged weights only: set merge_lora=True")
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    state = {name: tensor.cpu().clone() if rank == 0 else None for name, tensor in engine_weights(model, zero3=True)}
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        base = _base(model)
        base.save_pretrained(out, state_dict=state)
        processor.save_pretrained(out)
    return out


class ExportHF(L.Callback):
    """At the end of training, write the policy as an HF model directory (rank 0), e.g. ``runs/demo/hf``."""

    def __init__(self, out_dir: str | None = None, merge_lora: bool = True) -> None:
        """
        Args:
            out_dir: target directory; None = ``hf`` under the trainer's ``default_root_dir`` (each run its own).
            merge_lora: merge LoRA adapters into the weights (a plain Qwen3-VL directory); False saves adapters only.
        """
        self.out_dir = out_dir
        self.merge_lora = merge_lora

    def target(self, trainer: L.Trainer) -> Path:
        """The export folder: ``out_dir``, or ``hf`` in the run's own folder."""
        return Path(self.out_dir) if self.out_dir is not None else Path(trainer.default_root_dir) / "hf"

    def on_fit_start(self, trainer: L.Trainer, pl_module) -> None:
        if getattr(pl_module, "zero3", None) is not None and not self.merge_lora:
            raise ValueError("ExportHF.merge_lora: export under ZeRO-3 saves merged weights only (set it to true)")

    def on_train_end(self, trainer: L.Trainer, pl_module) -> None:
        # on_train_end, not on_fit_end: teardown (between the two) moves the module to CPU, which under ZeRO-3 splits
        # persistent and gathered parameters across devices
        zero3 = getattr(pl_module, "zero3", None) is not None
        if zero3 or trainer.is_global_zero:  # under ZeRO-3 every rank takes part in the gathers
            out = export_hf(pl_module.policy, pl_module.processor, self.target(trainer), self.merge_lora, zero3=zero3)
            rank_zero_info(f"exported the policy to {out} (loads with AutoModelForImageTextToText.from_pretrained)")
        trainer.strategy.barrier("export")  # no rank reads the directory before it is complete
