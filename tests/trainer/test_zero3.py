"""ZeRO-3 plumbing on CPU: detection from the strategy, the HfDeepSpeedConfig lifetime, the forward-only config, and
the gathered weight stream / export / reference — which, without partitioned parameters, must equal the ZeRO-2 path.
(The partitioned run itself needs CUDA: benchmarks/trainer_gpu_step.py.)"""

from __future__ import annotations

import gc
from types import SimpleNamespace

import pytest
import torch
import transformers

from tooliqa_trainer import LoraConfig, PolicyConfig, export_hf
from tooliqa_trainer.policy import engine_weights, load_policy, make_reference
from tooliqa_trainer.zero3 import hf_zero3_loading, inference_config, zero3_config

deepspeed = pytest.importorskip("deepspeed", reason="deepspeed is in the dev group; install it with `uv sync`")


def test_zero3_is_detected_from_the_strategy_config():
    from lightning.pytorch.strategies import DeepSpeedStrategy

    assert zero3_config(None) is None
    assert zero3_config(SimpleNamespace(strategy=SimpleNamespace())) is None
    assert zero3_config(SimpleNamespace(strategy=DeepSpeedStrategy(stage=2))) is None
    config = zero3_config(SimpleNamespace(strategy=DeepSpeedStrategy(stage=3)))
    assert config is not None and config["zero_optimization"]["stage"] == 3


def test_hf_zero3_loading_lives_as_long_as_its_reference():
    from transformers.integrations import is_deepspeed_zero3_enabled

    config = {"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": 1}
    holder = hf_zero3_loading(config)
    assert is_deepspeed_zero3_enabled()
    del holder
    gc.collect()
    assert not is_deepspeed_zero3_enabled(), "a dropped HfDeepSpeedConfig must not leak ZeRO-3 loading into others"


def test_inference_config_drops_the_optimizer_and_sizes_buckets():
    train = {
        "zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}, "overlap_comm": True},
        "optimizer": {"type": "AdamW"},
        "scheduler": {"type": "WarmupLR"},
        "gradient_clipping": 1.0,
        "bf16": {"enabled": True},
    }
    config = inference_config(train, hidden_size=64)
    assert not {"optimizer", "scheduler", "gradient_clipping"} & set(config)
    zero = config["zero_optimization"]
    assert zero["stage"] == 3 and "offload_optimizer" not in zero and zero["overlap_comm"]
    assert zero["reduce_bucket_size"] == 64 * 64 and zero["stage3_param_persistence_threshold"] == 640
    assert config["bf16"] == {"enabled": True} and train["optimizer"] == {"type": "AdamW"}  # the input is untouched


@pytest.mark.parametrize("lora", [None, LoraConfig(r=4, alpha=8)], ids=["full", "lora"])
def test_gathered_weight_stream_equals_the_plain_one(tiny_model_dir, lora):
    policy, _ = load_policy(PolicyConfig(path=str(tiny_model_dir), dtype="float32", lora=lora))
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    plain = {name: tensor.clone() for name, tensor in engine_weights(policy)}
    gathered = {name: tensor.clone() for name, tensor in engine_weights(policy, zero3=True)}
    assert plain.keys() == gathered.keys() and not any("lora" in name for name in plain)
    assert all(torch.equal(plain[name], gathered[name]) for name in plain)
    if lora is not None:  # merged while streaming, unmerged after
        base = dict(policy.get_base_model().named_parameters())
        name = next(n for n in plain if n.endswith("q_proj.weight") and "language_model" in n)
        stored = base[name.replace("q_proj.weight", "q_proj.base_layer.weight")]
        assert not torch.equal(plain[name], stored), "the stream must carry merged weights"


def test_partitioned_export_and_reference_load_back(tiny_model_dir, tmp_path):
    config = PolicyConfig(path=str(tiny_model_dir), dtype="float32", lora=LoraConfig(r=4, alpha=8))
    policy, processor = load_policy(config)
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    out = export_hf(policy, processor, tmp_path / "hf", zero3=True)
    loaded = transformers.AutoModelForImageTextToText.from_pretrained(out, dtype=torch.float32)
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, policy(input_ids=ids).logits, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="merge_lora=True"):
        export_hf(policy, processor, tmp_path / "adapters", merge_lora=False, zero3=True)

    full = PolicyConfig(path=str(tiny_model_dir), dtype="float32")
    trained, _ = load_policy(full)
    with torch.no_grad():
        next(trained.parameters()).add_(1.0)
    reference = make_reference(trained, full, zero3=True)  # a second load of the checkpoint, not a copy
    initial, _ = load_policy(full)
    assert all(torch.equal(a, b) for a, b in zip(reference.parameters(), initial.parameters()))
    assert not any(p.requires_grad for p in reference.parameters()) and not reference.training


def test_zero3_refuses_what_would_deadlock_or_diverge(tiny_model_dir):
    from tooliqa_trainer.zero3 import check_zero3_setup

    check_zero3_setup("hf", "expected", world_size=1)  # one rank: nothing to wait for
    check_zero3_setup("vllm", "sampled", world_size=8)
    with pytest.raises(ValueError, match="hf engine"):
        check_zero3_setup("hf", "sampled", world_size=2)
    with pytest.raises(ValueError, match="validation.readout"):
        check_zero3_setup("vllm", "expected", world_size=2)
    random_full = PolicyConfig(path=str(tiny_model_dir), dtype="float32", random_init=True)
    with pytest.raises(ValueError, match="random_init"):
        make_reference(torch.nn.Linear(1, 1), random_full, zero3=True)


def test_zero3_dtype_must_match_the_deepspeed_precision():
    from tooliqa_trainer.zero3 import check_zero3_dtype

    check_zero3_dtype({"bf16": {"enabled": True}}, "bfloat16")
    check_zero3_dtype({"fp16": {"enabled": True}}, "float16")
    check_zero3_dtype({"bf16": {"enabled": False}}, "float32")
    with pytest.raises(ValueError, match="policy.dtype is 'bfloat16'.*float32"):
        check_zero3_dtype({}, "bfloat16")
