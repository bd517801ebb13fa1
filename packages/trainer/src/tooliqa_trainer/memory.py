"""Per-GPU memory of a run's resident state, before activations: which layout fits which GPUs.

Mixed-precision AdamW under DeepSpeed ZeRO, counted as the ZeRO paper does (Rajbhandari et al. 2020, §3) for Ψ
parameters of which Ψ_t are trained: bf16 weights 2Ψ bytes, bf16 gradients 2Ψ_t, fp32 master weights + Adam's two
moments 12Ψ_t. Stage 1 partitions the optimizer states across the world size, stage 2 the gradients too, stage 3 the
weights too. A full fine-tune keeps a frozen bf16 reference copy (partitioned under ZeRO-3, as ``tooliqa_trainer.zero3``
does); LoRA's reference is the policy with its adapters off (nothing extra). The colocated vLLM engine reserves
``gpu_memory_utilization`` × the GPU's memory (its own weight copy + KV cache) while awake; with sleep mode on it frees
that during the update, so the total is the rollout-time peak.

Not counted: activations and logits of the update (grow with micro-batch × sequence length; SPEC §9 measured a LoRA
r=64 forward+backward of 4 × 798 tokens at 25 GB peak including the 17.5 GB of weights), the CUDA context and
fragmentation: keep several GB free beyond the total.

    python -m tooliqa_trainer.memory configs/tooliqa.yaml                        # the config's layout
    python -m tooliqa_trainer.memory configs/tooliqa.yaml configs/variants/lora.yaml
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tooliqa_agent.types import EngineConfig
from tooliqa_trainer.config import LoraConfig

__all__ = ["MemoryEstimate", "MemoryPlan", "estimate_memory", "lora_parameters", "plan_from_config"]

QWEN3_VL_8B_PARAMETERS = 8.77e9
"""Parameters of Qwen3-VL-8B-Instruct (SPEC §9: language model + vision tower)."""
QWEN3_VL_8B_LAYERS = 36
"""Decoder layers of its language model (where LoRA adapters go)."""
QWEN3_VL_8B_PROJECTIONS: dict[str, tuple[int, int]] = {
    "q_proj": (4096, 32 * 128),
    "k_proj": (4096, 8 * 128),
    "v_proj": (4096, 8 * 128),
    "o_proj": (32 * 128, 4096),
    "gate_proj": (4096, 12288),
    "up_proj": (4096, 12288),
    "down_proj": (12288, 4096),
}
"""(in, out) features of each linear layer of one decoder layer (hidden 4096, 32 heads, 8 KV heads of 128, MLP 12288)."""
_GB = 1e9


def lora_parameters(
    r: int,
    target_modules: Sequence[str],
    layers: int = QWEN3_VL_8B_LAYERS,
    projections: Mapping[str, tuple[int, int]] = QWEN3_VL_8B_PROJECTIONS,
) -> int:
    """Adapter parameters of rank-``r`` LoRA on ``target_modules`` of every layer: r · (in + out) per adapted linear."""
    unknown = sorted(set(target_modules) - set(projections))
    if unknown:
        raise ValueError(f"lora_parameters: no shape known for {unknown}; known: {sorted(projections)}")
    return layers * sum(r * sum(projections[name]) for name in target_modules)


@dataclass(frozen=True)
class MemoryPlan:
    """One training layout (defaults: Qwen3-VL-8B full fine-tune on one 80 GB GPU with a colocated vLLM)."""

    parameters: float = QWEN3_VL_8B_PARAMETERS
    """Ψ: the model's parameters."""
    trainable: float | None = None
    """Ψ_t: trained parameters; None = all of them (full fine-tune, with a frozen reference copy), else LoRA's
    adapter count (:func:`lora_parameters`; the adapters come on top of Ψ, and no reference copy is kept)."""
    world_size: int = 1
    """GPUs that share the ZeRO partitions (devices × nodes)."""
    zero_stage: int = 2
    """DeepSpeed ZeRO stage, 0–3."""
    gpu_memory_gb: float = 80.0
    """Memory of one GPU in GB (1e9 bytes): the base of vLLM's share."""
    vllm_memory_utilization: float = 0.35
    """The colocated vLLM engine's ``gpu_memory_utilization``; 0 for no vLLM engine (``hf`` shares the policy)."""

    def __post_init__(self) -> None:
        if self.zero_stage not in (0, 1, 2, 3):
            raise ValueError(f"MemoryPlan.zero_stage must be 0–3, got {self.zero_stage}")
        if self.world_size < 1 or self.parameters <= 0 or (self.trainable is not None and self.trainable <= 0):
            raise ValueError("MemoryPlan: world_size ≥ 1 and parameter counts > 0 needed")
        if not 0 <= self.vllm_memory_utilization < 1:
            raise ValueError(
                f"MemoryPlan.vllm_memory_utilization must be in [0, 1), got {self.vllm_memory_utilization}"
            )


@dataclass(frozen=True)
class MemoryEstimate:
    """GB per GPU of each resident part (see the module docstring for what is counted)."""

    weights_gb: float
    """bf16 policy weights (LoRA: base + adapters)."""
    gradients_gb: float
    """bf16 gradients of the trained parameters."""
    optimizer_gb: float
    """fp32 master weights + Adam's first and second moments of the trained parameters."""
    reference_gb: float
    """The frozen bf16 reference copy (full fine-tune only)."""
    vllm_gb: float
    """The colocated vLLM engine's reservation while awake."""

    @property
    def training_gb(self) -> float:
        """Everything but vLLM: resident through the whole run."""
        return self.weights_gb + self.gradients_gb + self.optimizer_gb + self.reference_gb

    @property
    def total_gb(self) -> float:
        """The rollout-time peak: training state + vLLM, before activations."""
        return self.training_gb + self.vllm_gb

    def summary(self) -> str:
        return (
            f"weights {self.weights_gb:.1f} + gradients {self.gradients_gb:.1f} + optimizer {self.optimizer_gb:.1f} "
            f"+ reference {self.reference_gb:.1f} = {self.training_gb:.1f} GB training state; + vLLM {self.vllm_gb:.1f}"
            f" = {self.total_gb:.1f} GB per GPU before activations"
        )


def estimate_memory(plan: MemoryPlan) -> MemoryEstimate:
    """Per-GPU GB of ``plan``'s resident state."""
    full = plan.trainable is None
    trained = plan.parameters if full else plan.trainable
    weights = plan.parameters if full else plan.parameters + plan.trainable
    world = plan.world_size

    def share(count: float, from_stage: int) -> float:
        """``count`` bytes on each GPU: divided across the world from ZeRO stage ``from_stage`` on."""
        return (count / world if plan.zero_stage >= from_stage else count) / _GB

    return MemoryEstimate(
        weights_gb=share(2 * weights, 3),
        gradients_gb=share(2 * trained, 2),
        optimizer_gb=share(12 * trained, 1),
        reference_gb=share(2 * plan.parameters, 3) if full else 0.0,
        vllm_gb=plan.vllm_memory_utilization * plan.gpu_memory_gb,
    )


def plan_from_config(
    sections: Sequence[Mapping], gpu_memory_gb: float = 80.0, parameters: float = QWEN3_VL_8B_PARAMETERS
) -> MemoryPlan:
    """The layout of a training YAML (``apps/train.py`` configs, later sections overriding earlier ones as
    ``--config a --config b`` does): devices × nodes, the DeepSpeed ZeRO stage, LoRA, the vLLM engine's share."""
    merged: dict = {}
    for section in sections:
        merged = _merge(merged, section)
    trainer = merged.get("trainer", {})
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1)
    if not isinstance(devices, int):
        raise ValueError(f"plan_from_config: trainer.devices must be a number of GPUs, got {devices!r}")
    strategy = trainer.get("strategy")
    stage = 0
    if isinstance(strategy, Mapping) and "DeepSpeed" in strategy.get("class_path", ""):
        stage = strategy.get("init_args", {}).get("config", {}).get("zero_optimization", {}).get("stage", 0)
    model = merged.get("model", {})
    lora = model.get("policy", {}).get("lora")
    trainable = None
    if lora is not None:
        defaults = LoraConfig()
        trainable = lora_parameters(lora.get("r", defaults.r), lora.get("target_modules", defaults.target_modules))
    engine = model.get("rollout", {}).get("engine", {})
    engine_defaults = EngineConfig()
    vllm = engine.get("name", engine_defaults.name) == "vllm"
    share = engine.get("gpu_memory_utilization", engine_defaults.gpu_memory_utilization) if vllm else 0.0
    return MemoryPlan(
        parameters=parameters,
        trainable=trainable,
        world_size=devices * nodes,
        zero_stage=stage,
        gpu_memory_gb=gpu_memory_gb,
        vllm_memory_utilization=share,
    )


def _merge(base: Mapping, override: Mapping) -> dict:
    """Nested dicts merged key by key, ``override`` winning (the shipped overlays restate a strategy whole)."""
    out = dict(base)
    for key, value in override.items():
        old = out.get(key)
        out[key] = _merge(old, value) if isinstance(old, Mapping) and isinstance(value, Mapping) else value
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Per-GPU memory of a training config's layout (before activations).")
    parser.add_argument("configs", nargs="+", type=Path, help="training YAMLs, later ones overriding earlier ones")
    parser.add_argument("--gpu-gb", type=float, default=80.0, help="memory of one GPU in GB (default 80)")
    args = parser.parse_args(argv)
    import yaml

    plan = plan_from_config([yaml.safe_load(path.read_text()) for path in args.configs], args.gpu_gb)
    kind = "full fine-tune" if plan.trainable is None else f"LoRA ({plan.trainable / 1e6:.1f} M adapter parameters)"
    print(f"{' + '.join(map(str, args.configs))}: {kind}, ZeRO-{plan.zero_stage} over {plan.world_size} GPU(s)")
    print(estimate_memory(plan).summary())


if __name__ == "__main__":
    main()
