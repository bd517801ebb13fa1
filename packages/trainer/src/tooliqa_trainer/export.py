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


def export_hf(model: torch.nn.Module, processor, out_dir: str | os.PathLike, merge_lora: bool = True) -> Path:
    """Save ``model`` (+ ``processor``) to ``out_dir``.

    Args:
        model: the policy; a peft model is merged into plain weights when ``merge_lora`` (a copy: the policy itself
            keeps its adapters), else its adapters are saved alone (``adapter_config.json`` + weights, peft format).
        processor: the processor the policy was trained with.
        out_dir: target directory (created).

    Returns:
        ``out_dir`` as a :class:`Path`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "merge_and_unload") and merge_lora:
        import copy

        model = copy.deepcopy(model).merge_and_unload()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


class ExportHF(L.Callback):
    """At the end of ``fit``, write the policy as an HF model directory (rank 0), e.g. ``runs/demo/hf``."""

    def __init__(self, out_dir: str = "runs/hf", merge_lora: bool = True) -> None:
        """
        Args:
            out_dir: target directory.
            merge_lora: merge LoRA adapters into the weights (a plain Qwen3-VL directory); False saves adapters only.
        """
        self.out_dir = out_dir
        self.merge_lora = merge_lora

    def on_fit_end(self, trainer: L.Trainer, pl_module) -> None:
        if trainer.is_global_zero:
            out = export_hf(pl_module.policy, pl_module.processor, self.out_dir, self.merge_lora)
            rank_zero_info(f"exported the policy to {out} (loads with AutoModelForImageTextToText.from_pretrained)")
