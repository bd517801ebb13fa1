"""The tiny kit round trip: save → load → chat template with an image and a tool call → generate → teacher forcing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tooliqa_agent.tiny_model import ADDED_TOKENS, SPECIAL_TOKENS, TinyModelConfig, build_tiny_qwen3vl

TOOLS = [
    {
        "name": "magnifier",
        "description": "Crop a region and upscale it.",
        "parameters": {"bbox_2d": {"type": "array", "range": [0, 1000], "description": "box"}},
        "required": ["bbox_2d"],
    }
]


def _image(seed: int, width: int, height: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))


def _generate_with_logprobs(model, inputs, new_tokens: int):
    """Greedy-free sampled generation; returns (sequences [N, L], raw-logit logprobs of new tokens [N, T])."""
    torch.manual_seed(0)
    out = model.generate(
        **inputs,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        output_logits=True,
        return_dict_in_generate=True,
    )
    prompt_len = inputs["input_ids"].shape[1]
    logprobs = torch.stack([torch.log_softmax(step.float(), -1) for step in out.logits], 1)
    return out.sequences, logprobs.gather(-1, out.sequences[:, prompt_len:, None]).squeeze(-1)


def _forward_logprobs(model, inputs, sequences):
    """Teacher-forced logprobs of ``sequences`` after the prompt in ``inputs``: [N, T]."""
    prompt_len = inputs["input_ids"].shape[1]
    extra = sequences.shape[1] - prompt_len
    forward = dict(inputs)
    forward["input_ids"] = sequences
    forward["attention_mask"] = torch.cat(
        [inputs["attention_mask"], torch.ones(sequences.shape[0], extra, dtype=torch.long)], 1
    )
    mm = inputs["mm_token_type_ids"]
    forward["mm_token_type_ids"] = torch.cat([mm, torch.zeros(mm.shape[0], extra, dtype=mm.dtype)], 1)
    logits = model(**forward).logits
    logprobs = torch.log_softmax(logits[:, prompt_len - 1 : -1].float(), -1)
    return logprobs.gather(-1, sequences[:, prompt_len:, None]).squeeze(-1)


def test_checkpoint_directory_is_complete(tiny_model_dir):
    names = {p.name for p in tiny_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["model_type"] == "qwen3_vl"
    assert config["vision_config"]["patch_size"] == 16 and config["vision_config"]["spatial_merge_size"] == 2


def test_tokenizer_carries_qwen_tokens(tiny_model):
    processor, model = tiny_model
    tokenizer = processor.tokenizer
    for token in SPECIAL_TOKENS + ADDED_TOKENS:
        ids = tokenizer.encode(token, add_special_tokens=False)
        assert len(ids) == 1, f"{token} is not one token"
    text = 'x <tool_call>\n{"name": "magnifier"}\n</tool_call><|im_end|>'
    decoded = tokenizer.decode(tokenizer.encode(text, add_special_tokens=False), skip_special_tokens=True)
    assert "<tool_call>" in decoded and "</tool_call>" in decoded and "<|im_end|>" not in decoded
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.padding_side == "left"


def test_same_seed_same_weights(tmp_path):
    from safetensors.torch import load_file

    a = load_file(build_tiny_qwen3vl(tmp_path / "a", TinyModelConfig(seed=3)) / "model.safetensors")
    b = load_file(build_tiny_qwen3vl(tmp_path / "b", TinyModelConfig(seed=3)) / "model.safetensors")
    c = load_file(build_tiny_qwen3vl(tmp_path / "c", TinyModelConfig(seed=4)) / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="num_heads"):
        TinyModelConfig(hidden_size=64, num_heads=5)


@torch.no_grad()
def test_generate_matches_teacher_forcing_with_tool_call(tiny_model):
    processor, model = tiny_model
    image = _image(1, 100, 80)
    messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Rate it."}]}]
    prompt = processor.apply_chat_template(messages, tools=TOOLS, add_generation_prompt=True, tokenize=False)
    assert "<tools>\n" + json.dumps(TOOLS[0]) in prompt
    assert prompt.count("<|vision_start|><|image_pad|><|vision_end|>") == 1
    inputs = processor(text=[prompt, prompt], images=[image, image], return_tensors="pt")
    n_image_tokens = int((inputs["input_ids"][0] == model.config.image_token_id).sum())
    assert n_image_tokens == int(inputs["image_grid_thw"][0].prod()) // 4
    assert torch.equal(inputs["mm_token_type_ids"].bool(), inputs["input_ids"] == model.config.image_token_id)

    sequences, gen_logprobs = _generate_with_logprobs(model, inputs, new_tokens=12)
    fwd_logprobs = _forward_logprobs(model, inputs, sequences)
    torch.testing.assert_close(fwd_logprobs, gen_logprobs, atol=1e-5, rtol=0)


@torch.no_grad()
def test_two_image_multi_turn_logprobs(tiny_model):
    """A magnifier round trip: user image → assistant tool call → tool view image → assistant generates."""
    processor, model = tiny_model
    original = _image(2, 96, 128)
    view = original.crop((0, 0, 64, 64)).resize((96, 96))
    conversation = [
        {"role": "user", "content": [{"type": "image", "image": original}, {"type": "text", "text": "Rate it."}]},
        {
            "role": "assistant",
            "content": "<thinking>Look closer.</thinking>",
            "tool_calls": [{"function": {"name": "magnifier", "arguments": {"bbox_2d": [0, 0, 500, 500]}}}],
        },
        {"role": "tool", "content": [{"type": "image", "image": view}, {"type": "text", "text": "Magnified view."}]},
    ]
    prompt = processor.apply_chat_template(conversation, tools=TOOLS, add_generation_prompt=True, tokenize=False)
    assert '<tool_call>\n{"name": "magnifier", "arguments": {"bbox_2d": [0, 0, 500, 500]}}\n</tool_call>' in prompt
    assert "<|im_start|>user\n<tool_response>\n<|vision_start|><|image_pad|><|vision_end|>" in prompt
    inputs = processor(text=[prompt], images=[original, view], return_tensors="pt")
    grids = inputs["image_grid_thw"]
    assert grids.shape == (2, 3)
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == int(grids.prod(-1).sum()) // 4

    sequences, gen_logprobs = _generate_with_logprobs(model, inputs, new_tokens=16)
    fwd_logprobs = _forward_logprobs(model, inputs, sequences)
    torch.testing.assert_close(fwd_logprobs, gen_logprobs, atol=1e-5, rtol=0)
