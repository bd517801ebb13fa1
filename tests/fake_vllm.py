"""A stand-in ``vllm`` package for CPU tests: a fake ``LLM`` that does what vllm 0.33's does where the engine and the
trainer depend on it, and records what the real one would see.

- Construction records the default device and whether a ``deepspeed.zero.Init`` is open (the state vLLM's own set-up
  would run under), then reseeds every global RNG with ``seed`` as vLLM's GPU worker does (``set_random_seed``,
  ``vllm/utils/torch_utils.py:528``, called from ``v1/worker/gpu_worker.py:517`` and ``:1094``).
- ``generate`` answers each prompt with a scripted reply, stopped the way vLLM stops it: the generation config's EOS
  ids join the request's ``stop_token_ids`` (``sampling_params.py:775-803``), then per token ``check_stop``
  (``v1/core/sched/utils.py:98-119``): the tokenizer's EOS → ``finish_reason="stop"``, ``stop_reason=None``; a stop
  id → ``"stop"``, ``stop_reason=<id>``; ``max_tokens`` → ``"length"``. The stopping token stays in ``token_ids``.
- ``sleep``/``wake_up``/``reset_prefix_cache`` (``entrypoints/llm.py:839/872/832``), ``llm_engine.reset_encoder_cache``
  (``v1/engine/llm_engine.py:412``) and ``llm_engine.model_executor.driver_worker.model_runner.model.load_weights``
  are recorded in call order.
"""

from __future__ import annotations

import random
import sys
import types
from collections.abc import Callable, Sequence
from types import SimpleNamespace

import numpy as np
import torch

Replies = Sequence[Sequence[int]] | Callable[[list[int]], Sequence[int]]


def zero_init_depth() -> int:
    """deepspeed's own count of open ``zero.Init`` contexts (0 when deepspeed was never imported)."""
    module = sys.modules.get("deepspeed.runtime.zero.partition_parameters")
    return 0 if module is None else module.zero_init_context


class FakeLLM:
    """``vllm.LLM(model, seed=…, **engine_args)``; ``replies``: token lists in order, or ``prompt_ids → ids``.

    ``eos_token_id`` / ``generation_eos``: the tokenizer's EOS and the generation config's ``eos_token_id``; read from
    ``model``'s directory when it is given, as vLLM reads them."""

    def __init__(
        self,
        model: str | None = None,
        *,
        seed: int = 0,
        replies: Replies = (),
        eos_token_id: int | None = None,
        generation_eos: int | Sequence[int] | None = None,
        **engine_args,
    ) -> None:
        self.default_device = torch.get_default_device()
        self.zero_init_depth = zero_init_depth()
        self.engine_args = {"model": model, "seed": seed, **engine_args}
        if model is not None:
            import transformers

            eos_token_id = transformers.AutoTokenizer.from_pretrained(model).eos_token_id
            generation_eos = transformers.GenerationConfig.from_pretrained(model).eos_token_id
        self.eos_token_id = eos_token_id
        self.generation_eos = [generation_eos] if isinstance(generation_eos, int) else list(generation_eos or ())
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        self.calls: list[str] = []
        self.loaded: list[str] = []
        self.pushes: list[dict[str, torch.Tensor]] = []
        """One ``{name: tensor}`` copy per ``load_weights`` call."""
        self.replies = replies if callable(replies) else list(replies)
        self.prompts: list = []
        self.params: list = []
        runner = SimpleNamespace(model=SimpleNamespace(load_weights=self._load_weights))
        self.llm_engine = SimpleNamespace(
            model_executor=SimpleNamespace(driver_worker=SimpleNamespace(model_runner=runner)),
            reset_encoder_cache=lambda: self.calls.append("reset_encoder_cache"),
        )

    def _load_weights(self, weights) -> None:
        self.calls.append("load_weights")
        self.pushes.append({})
        for name, tensor in weights:
            self.loaded.append(name)
            self.pushes[-1][name] = tensor.detach().clone()

    def sleep(self, level: int = 1) -> None:
        self.calls.append(f"sleep({level})")

    def wake_up(self, tags=None) -> bool:
        self.calls.append(f"wake_up({','.join(tags)})")
        return True

    def reset_prefix_cache(self) -> bool:
        self.calls.append("reset_prefix_cache")
        return True

    def _reply(self, prompt_ids: list[int]) -> list[int]:
        return list(self.replies(prompt_ids) if callable(self.replies) else self.replies.pop(0))

    def _stop(self, ids: list[int], params) -> tuple[list[int], str | None, int | None]:
        stops = set(params.stop_token_ids or ()) | (set(self.generation_eos) - {self.eos_token_id})
        for n, token in enumerate(ids[: params.max_tokens], 1):
            if token == self.eos_token_id:
                return ids[:n], "stop", None
            if token in stops:
                return ids[:n], "stop", token
        return ids[: params.max_tokens], "length" if len(ids) >= params.max_tokens else None, None

    def generate(self, prompts, sampling_params, use_tqdm):
        self.calls.append("generate")
        assert use_tqdm is False and len(prompts) == len(sampling_params)
        self.prompts, self.params = list(prompts), list(sampling_params)
        outputs = []
        for prompt, params in zip(prompts, sampling_params, strict=True):
            ids, finish_reason, stop_reason = self._stop(self._reply(list(prompt["prompt_token_ids"])), params)
            logprobs = [{token: SimpleNamespace(logprob=-0.5 * (k + 1))} for k, token in enumerate(ids)]
            output = SimpleNamespace(
                token_ids=ids, logprobs=logprobs, finish_reason=finish_reason, stop_reason=stop_reason
            )
            outputs.append(SimpleNamespace(outputs=[output]))
        return outputs


def install(monkeypatch, llm_class: type = FakeLLM) -> None:
    """Put a ``vllm`` package with the names the engine imports (``LLM``, ``SamplingParams``,
    ``sampling_params.StructuredOutputsParams``, ``inputs.TokensPrompt``) into ``sys.modules``."""
    vllm = types.ModuleType("vllm")
    vllm.SamplingParams = lambda **kwargs: SimpleNamespace(**kwargs)
    vllm.LLM = llm_class
    sampling_params = types.ModuleType("vllm.sampling_params")
    sampling_params.StructuredOutputsParams = lambda grammar: SimpleNamespace(grammar=grammar)
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = dict
    for name, module in (("vllm", vllm), ("vllm.sampling_params", sampling_params), ("vllm.inputs", inputs)):
        monkeypatch.setitem(sys.modules, name, module)
