"""The policy model: loading (tiny kit, local directory or hub id), LoRA or a frozen reference copy, the
temperature-scaled teacher-forced log-probs the loss needs, and the weights pushed to a rollout engine.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from tooliqa_agent.collate import collate
from tooliqa_trainer.config import PolicyConfig
from tooliqa_trainer.zero3 import gathered, reset_partitioned_lora, zero3_loading_active

__all__ = ["engine_weights", "frozen_logprobs", "load_policy", "make_reference", "reference_mode", "token_logprobs"]


def load_policy(config: PolicyConfig):
    """Load ``(model, processor)`` exactly as real weights load: ``AutoModelForImageTextToText.from_pretrained``.

    Builds the tiny kit at ``config.path`` first when ``config.tiny`` is set. LoRA wraps the model with peft; the
    wrapped model keeps working with ``generate`` (the hf engine shares this object).
    """
    import transformers

    if config.tiny is not None:
        from tooliqa_agent.tiny_model import ensure_tiny_qwen3vl

        ensure_tiny_qwen3vl(config.path, config.tiny)
    processor = transformers.AutoProcessor.from_pretrained(config.path)
    dtype = getattr(torch, config.dtype)
    if config.random_init:
        model_config = transformers.AutoConfig.from_pretrained(config.path)
        model = transformers.AutoModelForImageTextToText.from_config(
            model_config, dtype=dtype, attn_implementation=config.attn_implementation
        )
    else:
        model = transformers.AutoModelForImageTextToText.from_pretrained(
            config.path, dtype=dtype, attn_implementation=config.attn_implementation
        )
    if config.gradient_checkpointing:
        # Non-reentrant checkpointing needs no input grads, so it composes with LoRA's frozen embeddings.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.lora is not None:
        import peft

        lora = config.lora
        peft_config = peft.LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            # Adapters only in the language model: the vision tower's attention is named differently anyway.
            target_modules=rf".*language_model.*\.({'|'.join(lora.target_modules)})$",
        )
        model = peft.get_peft_model(model, peft_config)
        if zero3_loading_active():
            reset_partitioned_lora(model)
    elif config.freeze_vision:
        for param in _base(model).model.visual.parameters():
            param.requires_grad_(False)
    return model, processor


def make_reference(model: nn.Module, config: PolicyConfig, zero3: bool = False) -> nn.Module | None:
    """The frozen reference for the KL term: None with LoRA (the policy with adapters disabled *is* the reference),
    else a frozen copy of the initial full model (under ZeRO-3 a second partitioned load: placeholders cannot be
    deep-copied; ``tooliqa_trainer.zero3.wrap_reference`` then makes it callable)."""
    if config.lora is not None:
        return None
    if zero3:
        if config.random_init:
            raise ValueError(
                "PolicyConfig.random_init: under ZeRO-3 the full-fine-tune reference is a second load, which would draw "
                "other random weights than the policy; use LoRA or ZeRO-2 for random-weight runs"
            )
        reference, _ = load_policy(dataclasses.replace(config, gradient_checkpointing=False, freeze_vision=False))
    else:
        reference = copy.deepcopy(model)
    reference.eval()
    reference.requires_grad_(False)
    return reference


@contextmanager
def reference_mode(model: nn.Module, reference: nn.Module | None) -> Iterator[nn.Module]:
    """Yield the module that computes reference log-probs: the frozen copy, or the LoRA policy with adapters off."""
    if reference is not None:
        yield reference
    else:
        with model.disable_adapter():
            yield model


def token_logprobs(model: nn.Module, inputs: dict[str, Tensor], input_ids: Tensor, temperature: float) -> Tensor:
    """Teacher-forced log-probs of every token given its prefix, from logits divided by ``temperature``.

    Args:
        model: the policy (or reference); called with ``inputs`` (``PolicyBatch.model_inputs()``: ids, attention
            mask, ``mm_token_type_ids``, all images' ``pixel_values`` and ``image_grid_thw``).
        input_ids: ``[N, L]`` the same ids, to pick each next token.
        temperature: the sampling temperature (SPEC §5).

    Returns:
        ``[N, L]`` float32: entry t is log π(input_ids[t] | input_ids[:t]); entry 0 (no prefix) is 0.
    """
    logits = model(**inputs, use_cache=False).logits[:, :-1].float() / temperature
    targets = input_ids[:, 1:].unsqueeze(-1)
    # gather − logsumexp avoids materialising a second [N, L, V] log_softmax tensor (V = 151,936 for Qwen3-VL).
    logprobs = logits.gather(-1, targets).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    return torch.nn.functional.pad(logprobs, (1, 0))


@torch.no_grad()
def frozen_logprobs(
    model: nn.Module, trajectories, processor, pad_id: int, micro_batch: int, device, temperature: float
):
    """Per-trajectory ``[L_i]`` log-probs under ``model`` without grad (π_old or the reference), micro-batched."""
    out: list[Tensor] = []
    for start in range(0, len(trajectories), micro_batch):
        micro = trajectories[start : start + micro_batch]
        batch = collate(list(micro), processor, pad_id).to(device)
        logprobs = token_logprobs(model, batch.model_inputs(), batch.input_ids, temperature)
        out.extend(row[: len(t.input_ids)] for row, t in zip(logprobs, micro))
    return out


def engine_weights(model: nn.Module, zero3: bool = False) -> Iterator[tuple[str, Tensor]]:
    """Full-model weights under transformers parameter names, for ``Engine.update_weights`` (and the export).

    A generator: nothing happens unless the engine consumes it (the hf engine shares the policy and does not). With
    LoRA each adapted layer is merged while its weights stream and unmerged right after (SPEC §6: merge → push →
    unmerge), so at most one layer is merged at a time. Under ZeRO-3 (``zero3``; every rank must consume the stream
    in the same order) each module's own parameters are gathered only while they are yielded — an adapted layer
    together with its adapters, since a partitioned adapter cannot be merged — never the whole model.
    """
    adapted: str | None = None  # prefix of the LoRA layer whose subtree was already streamed
    for prefix, module in _base(model).named_modules():
        if adapted is not None and prefix.startswith(adapted + "."):
            continue
        if hasattr(module, "merge") and hasattr(module, "lora_A"):  # a peft LoRA layer
            adapted = prefix
            yield from _merged_layer(prefix, module, zero3)
            continue
        for name, param in module.named_parameters(prefix=prefix, recurse=False):
            with gathered([param], zero3):
                yield name, param.detach()


def _merged_layer(prefix: str, layer: nn.Module, zero3: bool) -> Iterator[tuple[str, Tensor]]:
    """One LoRA layer's base weights with its adapters merged in, under the base layer's transformers names."""
    with gathered(layer.parameters(), zero3):
        layer.merge()
        try:
            for name, param in layer.base_layer.named_parameters(prefix=prefix):
                yield name, param.detach()
        finally:
            layer.unmerge()


def _base(model: nn.Module) -> nn.Module:
    """The transformers model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model
