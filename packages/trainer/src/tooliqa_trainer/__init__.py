"""Tool-IQA trainer: GRPO with sequence-level importance sampling (GSPO) and a scheduled KL, as a LightningModule."""

from tooliqa_trainer.advantages import ADVANTAGES, grpo_advantages, make_advantage
from tooliqa_trainer.assessor import AgentAssessor
from tooliqa_trainer.callbacks import ToolReport, TorchThreads
from tooliqa_trainer.config import GRPOConfig, LoraConfig, OptimConfig, PolicyConfig, RolloutConfig, ValidationConfig
from tooliqa_trainer.datamodule import DatasetSpec, HiddenEvidenceSpec, ImageBatch, IQADataModule, SyntheticSpec
from tooliqa_trainer.export import ExportHF, export_hf
from tooliqa_trainer.loss import LOSSES, LossStats, PolicyLoss, make_loss
from tooliqa_trainer.module import GRPOModule
from tooliqa_trainer.readout import READOUTS, Readout
from tooliqa_trainer.schedule import LR_SCHEDULES, PiecewiseConstant

__all__ = [
    "ADVANTAGES",
    "LOSSES",
    "LR_SCHEDULES",
    "AgentAssessor",
    "READOUTS",
    "Readout",
    "DatasetSpec",
    "ExportHF",
    "GRPOConfig",
    "GRPOModule",
    "HiddenEvidenceSpec",
    "IQADataModule",
    "ImageBatch",
    "LossStats",
    "LoraConfig",
    "OptimConfig",
    "PiecewiseConstant",
    "PolicyConfig",
    "PolicyLoss",
    "RolloutConfig",
    "SyntheticSpec",
    "ToolReport",
    "TorchThreads",
    "ValidationConfig",
    "export_hf",
    "grpo_advantages",
    "make_advantage",
    "make_loss",
]
