"""Tool-IQA trainer: GRPO with sequence-level importance sampling (GSPO) and a scheduled KL, as a LightningModule.

Names load on first use (PEP 562): ``import tooliqa_trainer`` costs nothing, so ``apps/train.py --help`` answers
before Lightning (≈ 17 s to import on a busy 2-core box) loads.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "tooliqa_trainer.advantages": ("ADVANTAGES", "grpo_advantages", "make_advantage"),
    "tooliqa_trainer.assessor": ("AgentAssessor",),
    "tooliqa_trainer.callbacks": ("StepProgressBar", "ToolReport", "TorchThreads"),
    "tooliqa_trainer.config": (
        "GRPOConfig",
        "LoraConfig",
        "OptimConfig",
        "PolicyConfig",
        "RolloutConfig",
        "ValidationConfig",
    ),
    "tooliqa_trainer.credit": ("CREDITS", "make_credit"),
    "tooliqa_trainer.datamodule": ("DatasetSpec", "HiddenEvidenceSpec", "ImageBatch", "IQADataModule", "SyntheticSpec"),
    "tooliqa_trainer.errors": ("UsageError",),
    "tooliqa_trainer.export": ("ExportHF", "export_hf"),
    "tooliqa_trainer.loss": ("LOSSES", "LossStats", "PolicyLoss", "make_loss"),
    "tooliqa_trainer.module": ("GRPOModule",),
    "tooliqa_trainer.readout": ("READOUTS", "Readout"),
    "tooliqa_trainer.schedule": ("LR_SCHEDULES", "PiecewiseConstant"),
    "tooliqa_trainer.score": ("ScoreJob", "ScoredImage", "score_images"),
    "tooliqa_trainer.warm_start": ("WarmStartConfig", "WarmStartReport"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'tooliqa_trainer' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
