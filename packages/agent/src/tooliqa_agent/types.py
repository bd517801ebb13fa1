"""The engine-facing types: what the rollout asks an engine for and what it gets back.

Every engine (``hf``, ``vllm``, ``scripted``) implements :class:`Engine` over these types, so the protocol code never
knows which one runs. Prompts travel as token ids with every image's ``<|image_pad|>`` run EXPANDED, exactly as the
training forward sees them; an engine that needs another form (vLLM: one placeholder per image) converts with
:func:`tooliqa_agent.collate.vllm_prompt`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import torch

TurnKind = Literal["rubric", "action", "final"]
"""An assistant turn's role in the protocol: the rubric note, a gate turn (tool call or answer), a forced answer."""


@dataclass(frozen=True)
class SamplingConfig:
    """How every assistant turn is sampled (paper: temperature 0.9; SPEC §5 our defaults for the rest)."""

    temperature: float = 0.9
    """Softmax temperature; 0 means greedy decoding (logprobs are then reported at temperature 1)."""
    top_p: float = 1.0
    """Nucleus sampling mass; 1.0 disables it."""
    top_k: int = 0
    """Top-k cut-off; 0 disables it."""
    max_new_tokens: int = 512
    """Token budget of ONE assistant turn; a turn that exhausts it is truncated and ends its trajectory."""
    seed: int = 42
    """Base seed. Requests that carry their own ``seed`` (the evaluation's, from ``tooliqa_agent.seeding``) sample
    from it alone; the others from a seed per generate call derived from this one, so a rollout is reproducible."""

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"SamplingConfig.temperature must be ≥ 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"SamplingConfig.top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"SamplingConfig.top_k must be ≥ 0 (0 = off), got {self.top_k}")
        if self.max_new_tokens < 1:
            raise ValueError(f"SamplingConfig.max_new_tokens must be ≥ 1, got {self.max_new_tokens}")

    @property
    def logprob_temperature(self) -> float:
        """The temperature the trainer divides logits by (SPEC §5); greedy decoding reports raw-logit logprobs."""
        return self.temperature if self.temperature > 0 else 1.0


@dataclass(frozen=True)
class EngineConfig:
    """Which engine generates, and its construction options (engine-specific fields are ignored by the others)."""

    name: str = "hf"
    """Key of :data:`tooliqa_agent.engines.ENGINES`: ``"hf"``, ``"vllm"`` or ``"scripted"``."""
    model: str | None = None
    """Checkpoint directory, loaded when no model object is handed to ``make_engine`` (always for vLLM)."""
    device: str = "auto"
    """Device of the model and of the tool ops: ``"auto"`` = CUDA when present, else CPU."""
    dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16"
    """Weight dtype when the engine loads the checkpoint itself."""
    attn_implementation: str = "sdpa"
    """transformers attention kernel for the ``hf`` engine when it loads the checkpoint."""
    canonical_forced_text: bool = False
    """``hf`` with structured decoding: where the grammar forces a text (tags, attribute names, JSON keys), emit that
    text's own tokenization instead of any split of it the model samples. Same texts, far fewer decode steps for an
    untrained model (the CPU demo: 2× faster rollouts); the tokens differ from a free run's."""
    gpu_memory_utilization: float = 0.45
    """vLLM: share of GPU memory for weights + KV cache (colocated with training, so well below 0.9)."""
    max_model_len: int = 8192
    """vLLM: longest sequence (prompt + all turns) the KV cache must hold."""
    enable_prefix_caching: bool = True
    """vLLM: reuse the KV of shared prefixes (the G samples of an image share all but their own turns)."""
    enable_sleep_mode: bool = True
    """vLLM: free weights + KV between rollouts when colocated with training."""
    sleep_level: Literal[1, 2] = 2
    """vLLM sleep level: 1 offloads the weights to CPU memory, 2 discards them (the trainer pushes the policy's
    weights after every step anyway, so 2 saves the copy both ways)."""
    tensor_parallel_size: int = 1
    """vLLM: GPUs one engine spans."""
    enforce_eager: bool = False
    """vLLM: skip CUDA graph capture (faster start, slower decode)."""


@dataclass(frozen=True)
class GenerationRequest:
    """One assistant turn to generate for one trajectory."""

    prompt_ids: tuple[int, ...]
    """The whole conversation so far, ending with ``<|im_start|>assistant\\n``; image runs EXPANDED."""
    images: tuple[torch.Tensor, ...]
    """uint8 [3, H, W] per image in order of appearance, pre-sized to multiples of 32 within the pixel bounds."""
    grammar: str | None = None
    """Structured-decoding grammar of this turn (``tooliqa_agent.grammar.turn_grammar``); None = unconstrained."""
    kind: TurnKind = "action"
    """The turn's role in the protocol (lets a constraint or a script pick per-turn behaviour)."""
    trajectory: int = 0
    """Row-major index of the trajectory in its rollout (image_index * group_size + sample_index)."""
    turn: int = 0
    """Index of this assistant turn within its trajectory, from 0."""
    seed: int | None = None
    """This turn's own sampling seed (``tooliqa_agent.seeding.sample_seed`` of its image, sample and turn): what it
    samples then depends on nothing else in the batch. None = the engine's per-call seed."""


@dataclass(frozen=True)
class Completion:
    """What an engine generated for one request."""

    token_ids: tuple[int, ...]
    """Generated ids, including the closing end token (``<|im_end|>``, or another id of the checkpoint's generation
    config, ``engines.stops.end_token_ids``) when the turn stopped on one (then ``finished``)."""
    logprobs: tuple[float, ...]
    """Per generated id: log_softmax(raw logits / SamplingConfig.logprob_temperature) at that id (SPEC §5 scale)."""
    text: str
    """Decoded ``token_ids`` without the closing end token (special tokens kept)."""
    finished: bool
    """True when the turn ended on an end token; False when it ran out of ``max_new_tokens``."""
    forced: tuple[bool, ...] = ()
    """Per generated id: True where the grammar left the engine this one token (``canonical_forced_text``): text the
    policy did not choose, which the trainer's loss and KL skip. Empty: nothing was forced."""


@runtime_checkable
class Engine(Protocol):
    """Generates assistant turns for a batch of conversations."""

    @property
    def device(self) -> torch.device:
        """Where the model runs; the rollout runs the tools here and keeps the images here."""
        ...

    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig) -> list[Completion]:
        """One completion per request, in request order. Stops each request at an end token."""
        ...

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Load new policy weights (transformers parameter names). The ``hf`` engine shares the policy: no-op."""
        ...

    def release(self) -> None:
        """Free the engine's memory (vLLM: sleep); the next ``generate`` brings it back."""
        ...


@runtime_checkable
class ConstraintFactory(Protocol):
    """Builds the ``hf`` engine's logits processor for one batched ``generate`` call (structured decoding).

    ``requests[i]`` is row ``i`` of the batch; every row is left-padded to ``prompt_length`` tokens, so generated
    token ``t`` of row ``i`` is ``input_ids[i, prompt_length + t]`` inside the processor. Returns None when no request
    of the batch is constrained. The processor is a ``transformers.LogitsProcessor`` (``(input_ids [N, T], scores
    [N, V]) -> scores``); it must mask only, never rescale, so raw-logit logprobs stay meaningful.
    """

    def __call__(self, requests: Sequence[GenerationRequest], prompt_length: int): ...
