"""DeepSpeed ZeRO-3: what changes when parameters are partitioned across ranks.

Under ZeRO-3 every parameter is a placeholder outside a gather, so four things the ZeRO-2 path does directly need care
(``reference/rl_stack.md`` §1.8, §4.1, §4.4):

* loading — ``from_pretrained`` partitions the checkpoint while it reads it only when a live ``HfDeepSpeedConfig``
  exists (transformers keeps a weak reference to it), so the module holds one for the whole run;
* the full-fine-tune reference — a second ``from_pretrained`` (partitioned the same way, not a ``deepcopy`` of
  placeholders), wrapped by ``deepspeed.initialize`` without an optimizer so its forward gathers its layers;
* the weight push to vLLM and the export — each module's parameters are gathered only while they are read (a LoRA
  layer together with its adapters, merged then unmerged: a partitioned adapter cannot be merged);
* LoRA — peft initialises its new adapters on placeholders, where ``zeros_``/``kaiming_`` do nothing; the adapters are
  re-initialised gathered, or ``lora_B`` would start random and the policy would not start at the checkpoint.

On one GPU the hf engine can roll out from the partitioned policy (transformers gathers layer by layer). On several
ranks it cannot: each rank calls ``generate`` once per turn until its own trajectories end, and a rank that finishes
early would leave the others waiting in their gathers — :func:`check_zero3_setup` refuses it (use the vLLM engine).

deepspeed and transformers' DeepSpeed integration are imported only when ZeRO-3 is actually configured.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterable
from contextlib import nullcontext

from torch import nn

__all__ = [
    "check_zero3_setup",
    "check_zero3_dtype",
    "gathered",
    "hf_zero3_loading",
    "inference_config",
    "reset_partitioned_lora",
    "wrap_reference",
    "zero3_config",
    "zero_init_active",
]


def zero3_config(trainer) -> dict | None:
    """The DeepSpeed config dict when ``trainer`` runs DeepSpeed ZeRO stage 3, else None (also with no trainer)."""
    strategy = getattr(trainer, "strategy", None)
    config = getattr(strategy, "config", None)
    if not isinstance(config, dict):
        return None
    stage = (config.get("zero_optimization") or {}).get("stage")
    return config if stage == 3 else None


def hf_zero3_loading(config: dict):
    """An ``HfDeepSpeedConfig`` for ``config``: while the returned object lives, ``from_pretrained`` loads straight
    into partitioned parameters (and ``generate`` syncs ranks). Keep a reference for as long as models load."""
    from transformers.integrations import HfDeepSpeedConfig

    return HfDeepSpeedConfig(config)


def gathered(params: Iterable[nn.Parameter], enabled: bool):
    """Context in which ``params`` hold their full values on every rank (read-only), or a no-op.

    ``deepspeed.zero.GatheredParameters`` itself skips parameters that are not partitioned, so ``enabled`` only
    spares the import where ZeRO-3 is off.
    """
    if not enabled:
        return nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(list(params), modifier_rank=None)


def inference_config(config: dict, hidden_size: int | None = None) -> dict:
    """The training config stripped to what a forward-only ZeRO-3 engine needs (no optimizer, scheduler or clip),
    with bucket sizes scaled to the model's hidden size when given (small models otherwise over-prefetch)."""
    out = copy.deepcopy(config)
    for key in ("optimizer", "scheduler", "gradient_clipping"):
        out.pop(key, None)
    zero = dict(out.get("zero_optimization") or {})
    zero["stage"] = 3
    zero.pop("offload_optimizer", None)
    if hidden_size is not None:
        zero.update(
            reduce_bucket_size=hidden_size * hidden_size,
            stage3_param_persistence_threshold=10 * hidden_size,
            stage3_prefetch_bucket_size=int(0.9 * hidden_size * hidden_size),
        )
    out["zero_optimization"] = zero
    out.setdefault("train_micro_batch_size_per_gpu", 1)
    return out


def wrap_reference(reference: nn.Module, config: dict) -> nn.Module:
    """The frozen, partitioned reference made callable: ``deepspeed.initialize`` installs the hooks that gather each
    layer's parameters for its forward. Returns the wrapped module in eval mode."""
    import deepspeed

    text_config = reference.config.get_text_config()
    engine, *_ = deepspeed.initialize(model=reference, config=inference_config(config, text_config.hidden_size))
    engine.module.eval()
    return engine.module


def zero3_loading_active() -> bool:
    """True while an ``HfDeepSpeedConfig`` with stage 3 is alive (i.e. inside a ZeRO-3 run's model loading)."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    return is_deepspeed_zero3_enabled()


def zero_init_active() -> bool:
    """True inside a ``deepspeed.zero.Init`` context (Lightning enters one around ``configure_model`` under ZeRO-3).

    Reads the module-level nesting counter ``zero_init_context`` that ``Init.__enter__`` increments and
    ``__exit__`` decrements (deepspeed 0.19.8 ``runtime/zero/partition_parameters.py:42``, ``:362-381``); without
    deepspeed imported no such context can be open, and nothing is imported.
    """
    module = sys.modules.get("deepspeed.runtime.zero.partition_parameters")
    return module is not None and module.zero_init_context > 0


def reset_partitioned_lora(model: nn.Module) -> None:
    """Re-run peft's adapter initialisation (``lora_B`` = 0, ``lora_A`` Kaiming) on the gathered adapters; rank 0's
    values are kept on every rank."""
    import deepspeed
    from peft.tuners.lora import LoraLayer

    for module in model.modules():
        if not isinstance(module, LoraLayer):
            continue
        adapters = [param for name, param in module.named_parameters() if "lora_" in name]
        with deepspeed.zero.GatheredParameters(adapters, modifier_rank=0):
            for adapter in module.lora_A:
                module.reset_lora_parameters(adapter, True)


def check_zero3_setup(engine: str, readout: str, world_size: int) -> None:
    """Refuse ZeRO-3 combinations that would hang on several ranks: the hf engine (per-rank generate loops) and the
    ``expected`` readout (per-rank forward counts)."""
    if world_size <= 1:
        return
    if engine == "hf":
        raise ValueError(
            "rollout.engine.name: the hf engine cannot roll out under ZeRO-3 on several ranks (ranks run different "
            "numbers of generate calls and deadlock in the parameter gathers); use the vllm engine or ZeRO-2"
        )
    if readout == "expected":
        raise ValueError(
            "validation.readout: 'expected' runs a different number of policy forwards per rank, which deadlocks "
            "under ZeRO-3 on several ranks; use 'sampled' or ZeRO-2"
        )


def check_zero3_dtype(config: dict, dtype: str) -> None:
    """Under ZeRO-3 the DeepSpeed config's precision, not ``PolicyConfig.dtype``, sets the dtype the weights are
    partitioned in (``zero.Init`` casts them): refuse a disagreement instead of training in an unexpected dtype."""
    if (config.get("bf16") or {}).get("enabled"):
        partitioned = "bfloat16"
    elif (config.get("fp16") or {}).get("enabled"):
        partitioned = "float16"
    else:
        partitioned = "float32"
    if partitioned != dtype:
        raise ValueError(
            f"policy.dtype is {dtype!r} but the ZeRO-3 config partitions the weights in {partitioned} (its bf16/fp16 "
            f"sections, set from trainer.precision): make them agree"
        )
