"""HF export: a LoRA policy merged on request loads back with from_pretrained and computes the same logits."""

from __future__ import annotations

import torch
import transformers

from tooliqa_trainer import LoraConfig, PolicyConfig, export_hf
from tooliqa_trainer.policy import load_policy


def test_export_merges_lora_and_loads_with_from_pretrained(tiny_model_dir, tmp_path):
    policy, processor = load_policy(
        PolicyConfig(path=str(tiny_model_dir), dtype="float32", lora=LoraConfig(r=4, alpha=8))
    )
    with torch.no_grad():  # trained adapters: lora_B starts at 0, which would make merging a no-op
        for name, param in policy.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    out = export_hf(policy, processor, tmp_path / "hf", merge_lora=True)
    assert hasattr(policy, "peft_config"), "exporting must not merge the training policy itself"
    loaded = transformers.AutoModelForImageTextToText.from_pretrained(out, dtype=torch.float32)
    assert transformers.AutoProcessor.from_pretrained(out).tokenizer.chat_template
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    with torch.no_grad():
        expected = policy(input_ids=ids).logits
        got = loaded(input_ids=ids).logits
        with policy.disable_adapter():
            base = policy(input_ids=ids).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(got, base, atol=1e-3), "the adapters must be in the exported weights"
