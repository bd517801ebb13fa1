"""Which generated ids end an assistant turn, the same set for every engine.

A Qwen chat turn ends on ``<|im_end|>``, but a checkpoint's ``generation_config.json`` may list more end ids
(Qwen3-VL-8B-Instruct: ``<|im_end|>`` and ``<|endoftext|>``, SPEC §6), and vLLM stops on all of them by itself: on the
tokenizer's EOS (``sampling_params.eos_token_id``) and on the config's other ids, which it adds to ``stop_token_ids``
(vllm 0.33 ``sampling_params.py:775-803``, called from ``v1/engine/input_processor.py:489``). A turn that stopped on
any of them is a finished turn, in ``hf`` exactly as in ``vllm``.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["end_token_ids"]


def end_token_ids(tokenizer, generation_eos: int | Sequence[int] | None) -> tuple[int, ...]:
    """``<|im_end|>``, then every id of ``generation_eos`` (a generation config's ``eos_token_id``: one id, a list
    or None), then the tokenizer's EOS; each id once, in that order."""
    ids = [int(tokenizer.convert_tokens_to_ids("<|im_end|>"))]
    if isinstance(generation_eos, int):
        ids.append(generation_eos)
    elif generation_eos is not None:
        ids.extend(int(token) for token in generation_eos)
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    return tuple(dict.fromkeys(ids))
