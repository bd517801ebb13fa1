"""The per-GPU memory estimate: hand-computed ZeRO accounting, LoRA's adapter count against peft's, and every shipped
training config fitting the 80 GB GPUs it names."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tooliqa_trainer.memory import (
    QWEN3_VL_8B_PARAMETERS,
    MemoryPlan,
    estimate_memory,
    lora_parameters,
    main,
    plan_from_config,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PSI = QWEN3_VL_8B_PARAMETERS / 1e9  # GB per byte-per-parameter


def test_full_fine_tune_by_zero_stage_hand_computed():
    one = estimate_memory(MemoryPlan(world_size=1, zero_stage=2, vllm_memory_utilization=0.0))
    # the old paper config: 2Ψ weights + 2Ψ gradients + 12Ψ optimizer + 2Ψ reference = 18Ψ ≈ 158 GB on one GPU
    assert one.training_gb == pytest.approx(18 * PSI) and round(one.total_gb) == 158
    stages = {
        stage: estimate_memory(MemoryPlan(world_size=4, zero_stage=stage, vllm_memory_utilization=0.35))
        for stage in range(4)
    }
    assert stages[0].training_gb == pytest.approx(18 * PSI)
    assert stages[1].optimizer_gb == pytest.approx(12 * PSI / 4) and stages[1].gradients_gb == pytest.approx(2 * PSI)
    assert stages[2].gradients_gb == pytest.approx(2 * PSI / 4) and stages[2].weights_gb == pytest.approx(2 * PSI)
    assert stages[3].training_gb == pytest.approx(18 * PSI / 4)  # everything partitioned, the reference too
    assert stages[3].vllm_gb == pytest.approx(0.35 * 80) and stages[3].total_gb == pytest.approx(18 * PSI / 4 + 28)


def test_lora_counts_adapters_only_and_keeps_no_reference():
    adapters = lora_parameters(64, ["q_proj", "k_proj", "v_proj", "o_proj"])
    assert adapters == 36 * 64 * ((4096 + 4096) + 2 * (4096 + 1024) + (4096 + 4096))  # 61.3 M
    lora = estimate_memory(MemoryPlan(trainable=adapters, world_size=1, zero_stage=2))
    assert lora.reference_gb == 0.0
    assert lora.weights_gb == pytest.approx(2 * (QWEN3_VL_8B_PARAMETERS + adapters) / 1e9)
    assert lora.optimizer_gb == pytest.approx(12 * adapters / 1e9)
    with pytest.raises(ValueError, match="no shape known"):
        lora_parameters(8, ["qkv"])


def test_lora_parameters_match_peft_on_the_tiny_model(tiny_model_dir):
    peft = pytest.importorskip("peft")
    import transformers

    config = transformers.AutoConfig.from_pretrained(tiny_model_dir).text_config
    hidden, head = config.hidden_size, config.head_dim
    projections = {
        "q_proj": (hidden, config.num_attention_heads * head),
        "v_proj": (hidden, config.num_key_value_heads * head),
        "down_proj": (config.intermediate_size, hidden),
    }
    model = transformers.Qwen3VLForConditionalGeneration(transformers.AutoConfig.from_pretrained(tiny_model_dir))
    targets = r".*language_model.*\.(q_proj|v_proj|down_proj)$"  # as tooliqa_trainer.policy targets them
    wrapped = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules=targets))
    counted = sum(p.numel() for name, p in wrapped.named_parameters() if "lora_" in name)
    assert lora_parameters(4, list(projections), config.num_hidden_layers, projections) == counted


def _sections(*names: str) -> list[dict]:
    return [yaml.safe_load((CONFIGS / name).read_text()) for name in names]


OVERLAYS = sorted((CONFIGS / "ablations").glob("*.yaml")) + sorted((CONFIGS / "variants").glob("*.yaml"))


@pytest.mark.parametrize(
    "names", [("tooliqa.yaml",), *[("tooliqa.yaml", f"{p.parent.name}/{p.name}") for p in OVERLAYS]], ids=str
)
def test_every_shipped_training_config_fits_80_gb_gpus(names):
    plan = plan_from_config(_sections(*names))
    estimate = estimate_memory(plan)
    assert estimate.total_gb < 72, f"{names}: {estimate.summary()} leaves < 8 GB of an 80 GB GPU for activations"


def test_the_shipped_layouts():
    paper = plan_from_config(_sections("tooliqa.yaml"))
    assert (paper.trainable, paper.world_size, paper.zero_stage, paper.vllm_memory_utilization) == (None, 4, 3, 0.35)
    assert estimate_memory(paper).total_gb == pytest.approx(18 * PSI / 4 + 28)
    lora = plan_from_config(_sections("tooliqa.yaml", "variants/lora.yaml"))
    assert (lora.world_size, lora.zero_stage, lora.trainable) == (
        1,
        2,
        lora_parameters(64, ["q_proj", "k_proj", "v_proj", "o_proj"]),
    )
    demo = plan_from_config(_sections("demo.yaml"))
    assert (demo.world_size, demo.zero_stage, demo.vllm_memory_utilization) == (1, 0, 0.0)  # CPU, hf engine


def test_cli_prints_the_estimate(capsys):
    main([str(CONFIGS / "tooliqa.yaml"), "--gpu-gb", "80"])
    out = capsys.readouterr().out
    assert "full fine-tune, ZeRO-3 over 4 GPU(s)" in out and "= 67.5 GB per GPU before activations" in out
