"""The vLLM engine: an in-process (colocated) ``vllm.LLM`` behind the :class:`~tooliqa_agent.types.Engine` interface.

Written against vLLM 0.33's documented API (``reference/rl_stack.md`` §1.7–1.8, §2; SPEC §6) and imported lazily
(extra ``vllm``):

- prompts are token ids with ONE ``<|image_pad|>`` per image (``collate.vllm_prompt``) plus the images as
  multimodal data, as PIL images (vLLM reads a 3-D tensor as precomputed embeddings, not pixels);
- ``SamplingParams`` map one to one from :class:`SamplingConfig`; logprobs of the sampled token come back with
  ``logprobs_mode="processed_logprobs"``: log_softmax(logits / temperature), the trainer's scale (exact while
  top_p = 1 and top_k = 0, the defaults: a nucleus renormalises them);
- a turn's grammar goes in as ``StructuredOutputsParams(grammar=…)`` (vLLM's xgrammar backend);
- a turn ends on any id of :func:`~tooliqa_agent.engines.stops.end_token_ids`, all sent as ``stop_token_ids``: vLLM
  stops on the tokenizer's EOS with ``stop_reason=None`` and on a stop id with ``stop_reason=<id>``, both with
  ``finish_reason="stop"`` and the id as the last output token (``v1/core/sched/utils.py:105-112``), so the last
  token tells a finished turn;
- ``update_weights`` pushes transformers-named tensors through the driver worker's ``model.load_weights`` then
  resets the prefix and encoder caches; ``release`` sleeps; the order is wake weights → load → wake kv_cache →
  generate → sleep;
- building ``LLM`` reseeds every global RNG and needs the default device to be the CPU: :meth:`VLLMEngine.from_config`
  builds it with both kept as the caller had them (see :func:`construction_scope`).

The engine runs with ``distributed_executor_backend="external_launcher"``: every rank builds its own ``LLM`` after
``torch.distributed`` is up (or alone, with single-process defaults), and the model lives in this process, which
is what makes the ``load_weights`` attribute chain reachable.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch

from tooliqa_agent.collate import vllm_prompt
from tooliqa_agent.engines.stops import end_token_ids
from tooliqa_agent.seeding import rank_seed
from tooliqa_agent.types import Completion, EngineConfig, GenerationRequest, SamplingConfig
from tooliqa_tools import tensor_to_pil

SLEEP_LEVELS = (1, 2)
"""vLLM sleep levels: 1 offloads weights to CPU memory (generate works after it), 2 discards them (push first)."""

# peft wraps the policy: its parameter names differ from the transformers names vLLM's loader maps
_PREFIXES = ("base_model.model.",)
_INFIXES = (".base_layer.", "._checkpoint_wrapped_module.", ".modules_to_save.default.")
_ADAPTER_MARKERS = ("lora_", ".original_module.")


def llm_kwargs(config: EngineConfig, max_images: int, seed: int) -> dict[str, object]:
    """Keyword arguments of ``vllm.LLM`` for a colocated rollout engine (``rl_stack.md`` §6.3)."""
    if config.model is None:
        raise ValueError("EngineConfig.model: the vllm engine loads a checkpoint directory; none was given")
    if max_images < 1:
        raise ValueError(f"vllm engine: max_images must be ≥ 1, got {max_images}")
    return {
        "model": config.model,
        "dtype": config.dtype,
        "seed": seed,
        "tensor_parallel_size": config.tensor_parallel_size,
        "gpu_memory_utilization": config.gpu_memory_utilization,
        "max_model_len": config.max_model_len,
        "enable_prefix_caching": config.enable_prefix_caching,
        "enable_sleep_mode": config.enable_sleep_mode,
        "enforce_eager": config.enforce_eager,
        "limit_mm_per_prompt": {"image": max_images, "video": 0},
        "logprobs_mode": "processed_logprobs",
        "distributed_executor_backend": "external_launcher",
    }


def process_rank(environ: Mapping[str, str]) -> tuple[int, int]:
    """``(rank, world size)`` of this process: torch.distributed's once it is up (a training run), else the launcher's
    ``RANK`` / ``WORLD_SIZE``, else one process. Lightning's own process launcher (``devices: N`` without torchrun)
    sets ``LOCAL_RANK`` and ``WORLD_SIZE`` but no ``RANK``: there the environment alone would make every rank 0."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(environ.get("RANK", "0")), int(environ.get("WORLD_SIZE", "1"))


def check_tensor_parallel(tensor_parallel_size: int, world_size: int) -> None:
    """Refuse tensor-parallel engines: with ``external_launcher`` the ranks ``[i·tp, (i+1)·tp)`` form one engine (vLLM
    lays TP groups out fastest, ``distributed/parallel_state.py`` ``initialize_model_parallel``) and each of them must
    submit the SAME prompts in lockstep, while every training rank rolls out its own images for its own number of
    turns — the engine would be fed different prompts per rank, or a rank would wait forever."""
    if tensor_parallel_size != 1:
        raise ValueError(
            f"EngineConfig.tensor_parallel_size is {tensor_parallel_size} (world size {world_size}): the colocated vllm "
            "engine runs one engine per rank (1); ranks of a tensor-parallel group would have to submit identical "
            "prompts in lockstep, which per-rank rollouts do not. Use 1 (an 8B policy fits one GPU)"
        )


def launcher_env(environ: Mapping[str, str], rank: int = 0, world_size: int = 1) -> dict[str, str]:
    """The torch.distributed variables ``external_launcher`` reads (``v1/executor/uniproc_executor.py``
    ``ExecutorWithExternalLauncher._distributed_args``: ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` and
    the ``env://`` world size) that ``environ`` lacks or contradicts, for the process of ``rank`` in ``world_size``:
    a training run's ranks as torch.distributed has them, or single-process defaults."""
    wanted = {"RANK": str(rank), "WORLD_SIZE": str(world_size)}
    defaults = {"LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29533"}
    if world_size > 1 and "LOCAL_RANK" not in environ:
        raise ValueError(
            f"vllm engine: rank {rank} of {world_size} has no LOCAL_RANK in its environment; launch with torchrun, "
            "srun or Lightning, which set it"
        )
    out = {key: value for key, value in wanted.items() if environ.get(key) != value}
    out.update({key: value for key, value in defaults.items() if key not in environ})
    return out


def sampling_kwargs(
    sampling: SamplingConfig, max_tokens: int, seed: int, stop_token_ids: Sequence[int]
) -> dict[str, object]:
    """Keyword arguments of ``vllm.SamplingParams`` for one request (the grammar is added by the engine).

    ``logprobs=0`` returns the sampled token's logprob only; ``detokenize=False`` because the engine decodes with the
    processor's tokenizer, exactly as the ``hf`` engine does. ``stop_token_ids``: every end id of the turn, explicit
    rather than left to vLLM's generation-config defaults, so both engines stop on the same set.
    """
    return {
        "n": 1,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,
        "max_tokens": max_tokens,
        "seed": seed,
        "stop_token_ids": list(stop_token_ids),
        "logprobs": 0,
        "detokenize": False,
        "skip_special_tokens": False,
    }


@contextmanager
def construction_scope() -> Iterator[None]:
    """Where ``vllm.LLM`` is built: the CPU as the default device, and python's, numpy's, torch's and every CUDA
    device's RNG state restored on exit.

    vLLM's set-up makes device-less CPU tensors (e.g. pinned buffers) that a caller's default-device context (such as
    Lightning's ``strategy.tensor_init_context()``) would turn into CUDA tensors. Its GPU worker reseeds every global
    RNG with the engine seed, at start-up and again after profiling (vllm 0.33 ``utils/torch_utils.py:528``
    ``set_random_seed``, from ``v1/worker/gpu_worker.py:517`` and ``:1094``), which would replace a training run's
    ``seed_everything`` state.
    """
    import numpy as np

    python_state, numpy_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices), torch.device("cpu"):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def generation_eos(model: str) -> int | list[int] | None:
    """The ``eos_token_id`` of ``model``'s generation config, found as vLLM finds it: ``generation_config.json``, else
    the one transformers derives from ``config.json``, else None (vllm 0.33 ``transformers_utils/config.py:1275``)."""
    import transformers

    try:
        return transformers.GenerationConfig.from_pretrained(model).eos_token_id
    except OSError:
        try:
            return transformers.GenerationConfig.from_model_config(
                transformers.AutoConfig.from_pretrained(model)
            ).eos_token_id
        except OSError:
            return None


def vllm_weight_name(name: str) -> str | None:
    """The transformers name vLLM's ``load_weights`` expects for a policy parameter; None for adapter-only tensors.

    Plain transformers names pass unchanged (vLLM maps ``model.language_model.*`` etc. itself). Names of a peft
    model whose adapters were merged lose ``base_model.model.`` and ``.base_layer``; LoRA A/B matrices and
    ``original_module`` copies are skipped (TRL's colocate sync does the same, ``rl_stack.md`` §1.8).
    """
    if any(marker in name for marker in _ADAPTER_MARKERS):
        return None
    for prefix in _PREFIXES:
        name = name.removeprefix(prefix)
    for infix in _INFIXES:
        name = name.replace(infix, ".")
    return name


def vllm_weights(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
    """``named_tensors`` renamed by :func:`vllm_weight_name`, adapter-only tensors dropped; lazy (one at a time)."""
    for name, tensor in named_tensors:
        target = vllm_weight_name(name)
        if target is not None:
            yield target, tensor


class VLLMEngine:
    """Colocated vLLM generation with weight sync and sleep/wake.

    ``llm``: a ``vllm.LLM`` (any object with its ``generate``/``sleep``/``wake_up``/``reset_prefix_cache``, the
    ``llm_engine.reset_encoder_cache`` and the ``llm_engine.model_executor.driver_worker.model_runner.model`` chain).
    ``processor``: the checkpoint's processor. ``eos_token_ids``: the checkpoint's generation-config ``eos_token_id``
    (:func:`generation_eos`), which vLLM stops on by itself.
    """

    def __init__(
        self,
        llm,
        processor,
        *,
        max_model_len: int,
        sleep_mode: bool = True,
        sleep_level: int = 2,
        eos_token_ids: int | Sequence[int] | None = None,
    ) -> None:
        if sleep_level not in SLEEP_LEVELS:
            raise ValueError(f"vllm engine: sleep_level must be one of {SLEEP_LEVELS}, got {sleep_level}")
        self.llm = llm
        self.processor = processor
        self.max_model_len = max_model_len
        self.sleep_mode = sleep_mode
        self.sleep_level = sleep_level
        tokenizer = processor.tokenizer
        self.end_ids = end_token_ids(tokenizer, eos_token_ids)
        """Ids that end a turn (``<|im_end|>`` first), all sent as ``stop_token_ids``."""
        self.image_token_id = int(tokenizer.convert_tokens_to_ids("<|image_pad|>"))
        self._weights_awake = True
        self._kv_awake = True
        self._weights_valid = True  # False after a level-2 sleep until weights are pushed again
        self.seed_offset = 0
        """Requests issued so far: each gets its own seed (identical prompts sample differently); a resumable run's
        state, checkpointed by the trainer (per rank)."""
        self.rank = 0
        """This process's rank (:meth:`from_config`): a request without its own seed gets ``rank_seed(sampling.seed +
        seed_offset + index, rank)``, so ranks never sample with the same seeds (their requests at the same index
        would otherwise draw the same random numbers)."""

    @classmethod
    def from_config(cls, config: EngineConfig, model=None, processor=None, max_images: int = 3) -> VLLMEngine:
        """Build ``vllm.LLM`` from ``config.model`` inside :func:`construction_scope` (``model`` is ignored: vLLM loads
        its own copy, then receives the policy's weights through ``update_weights``). ``max_images``: 1 + the
        protocol's tool rounds. Call it where no ``deepspeed.zero.Init`` is active (it would partition vLLM's
        modules); the trainer builds the engine at fit start for that reason."""
        import transformers
        from vllm import LLM

        rank, world_size = process_rank(os.environ)
        check_tensor_parallel(config.tensor_parallel_size, world_size)
        # the engine seed of vLLM's own RNG: one per engine (TRL's colocate mode: process index // TP size)
        kwargs = llm_kwargs(config, max_images, seed=rank // config.tensor_parallel_size)
        os.environ.update(launcher_env(os.environ, rank, world_size))
        if processor is None:
            processor = transformers.AutoProcessor.from_pretrained(config.model)
        with construction_scope():
            llm = LLM(**kwargs)
        engine = cls(
            llm,
            processor,
            max_model_len=config.max_model_len,
            sleep_mode=config.enable_sleep_mode,
            sleep_level=config.sleep_level,
            eos_token_ids=generation_eos(config.model),
        )
        engine.rank = rank
        engine._model()  # fail now, not at the first weight sync, if the in-process model is unreachable
        return engine

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")

    def _model(self):
        """The vLLM ``nn.Module`` in this process (needs ``external_launcher``: no engine-core subprocess)."""
        try:
            return self.llm.llm_engine.model_executor.driver_worker.model_runner.model
        except AttributeError as err:
            raise RuntimeError(
                "vllm engine: llm.llm_engine.model_executor.driver_worker.model_runner.model is unreachable "
                f"({err}); build LLM with distributed_executor_backend='external_launcher'"
            ) from None

    def _wake(self) -> None:
        """Bring weights and KV cache back before generating (no-op when awake)."""
        if not self._weights_valid:
            raise RuntimeError(
                "vllm engine: weights were discarded by sleep(level=2); call update_weights(...) before generate"
            )
        if not self._weights_awake:
            self.llm.wake_up(tags=["weights"])
            self._weights_awake = True
        if not self._kv_awake:
            self.llm.wake_up(tags=["kv_cache"])
            self._kv_awake = True

    def _params(self, request: GenerationRequest, sampling: SamplingConfig, seed: int, max_tokens: int):
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        kwargs = sampling_kwargs(sampling, max_tokens, seed, self.end_ids)
        if request.grammar is not None:
            kwargs["structured_outputs"] = StructuredOutputsParams(grammar=request.grammar)
        return SamplingParams(**kwargs)

    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig) -> list[Completion]:
        """One completion per request; a prompt that leaves no room under ``max_model_len`` gets an empty,
        unfinished completion (its trajectory ends as truncated) instead of failing the batch."""
        if not requests:
            return []
        from vllm.inputs import TokensPrompt

        self._wake()
        prompts, params, rows = [], [], []
        for index, request in enumerate(requests):
            room = self.max_model_len - len(request.prompt_ids)  # vLLM counts the expanded prompt
            if room < 1:
                continue
            ids, images = vllm_prompt(request, self.image_token_id)
            prompt = TokensPrompt(prompt_token_ids=ids)
            if images:
                prompt["multi_modal_data"] = {"image": [tensor_to_pil(image) for image in images]}
            prompts.append(prompt)
            own = request.seed is not None
            seed = request.seed if own else rank_seed(sampling.seed + self.seed_offset + index, self.rank)
            params.append(self._params(request, sampling, seed, min(room, sampling.max_new_tokens)))
            rows.append(index)
        self.seed_offset += len(requests)
        outputs = self.llm.generate(prompts, sampling_params=params, use_tqdm=False) if prompts else []
        completions = [Completion(token_ids=(), logprobs=(), text="", finished=False)] * len(requests)
        for row, output in zip(rows, outputs, strict=True):
            completions[row] = self._completion(output.outputs[0])
        return completions

    def _completion(self, output) -> Completion:
        """A ``vllm.CompletionOutput`` as a Completion (token ids include the closing end token)."""
        token_ids = tuple(int(token) for token in output.token_ids)
        if output.logprobs is None or len(output.logprobs) != len(token_ids):
            raise RuntimeError("vllm engine: the output lacks per-token logprobs (SamplingParams.logprobs=0 expected)")
        logprobs = tuple(float(step[token].logprob) for step, token in zip(output.logprobs, token_ids, strict=True))
        finished = bool(token_ids) and token_ids[-1] in self.end_ids
        text = self.processor.tokenizer.decode(token_ids[:-1] if finished else token_ids)
        return Completion(token_ids=token_ids, logprobs=logprobs, text=text, finished=finished)

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Push policy weights (transformers or merged-peft names; see :func:`vllm_weight_name`) into vLLM.

        ``named_tensors`` is consumed lazily, one tensor at a time, so a ZeRO-3 caller can gather each parameter
        inside its iterator. With LoRA, merge the adapters before and unmerge after this call. After a level-2
        sleep push every parameter: the woken weight memory holds nothing until then.
        """
        if not self._weights_awake:
            self.llm.wake_up(tags=["weights"])
            self._weights_awake = True
        self._model().load_weights(vllm_weights(named_tensors))
        # both caches hold results of the old weights: prefix KV, and vision-encoder outputs keyed by image hash
        # (vllm 0.33 entrypoints/llm.py:832; v1/engine/llm_engine.py:412, which LLM itself does not wrap)
        self.llm.reset_prefix_cache()
        self.llm.llm_engine.reset_encoder_cache()
        self._weights_valid = True

    def release(self) -> None:
        """Sleep (free weights and KV cache) when sleep mode is on; the next ``generate`` wakes the engine (after a
        level-2 sleep only once ``update_weights`` refilled the weights). vLLM 0.33 ``entrypoints/llm.py:839``
        ``sleep(level)``, ``:872`` ``wake_up(tags)`` with tags ``"weights"`` and ``"kv_cache"``; the scheduler resumes
        once both are awake (``v1/engine/core.py:1031``)."""
        if not self.sleep_mode or not (self._weights_awake or self._kv_awake):
            return
        self.llm.sleep(level=self.sleep_level)
        self._weights_awake = self._kv_awake = False
        self._weights_valid = self.sleep_level == 1
