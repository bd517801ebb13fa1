"""An engine that replays given assistant texts: the tests walk every protocol branch with it.

Each reply is tokenized with the processor's tokenizer and closed with ``<|im_end|>``, exactly the ids a model would
have generated for that text. A reply longer than ``max_new_tokens`` is cut there and reported unfinished.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch

from tooliqa_agent.types import Completion, EngineConfig, GenerationRequest, SamplingConfig

Replies = Callable[[GenerationRequest], str] | Sequence[Sequence[str]]
"""Either a function of the request, or texts indexed ``[request.trajectory][request.turn]``."""


class ScriptedEngine:
    """Replays ``replies``; every logprob is ``logprob`` (there is no model)."""

    def __init__(self, processor, replies: Replies, device: str | torch.device = "cpu", logprob: float = 0.0) -> None:
        self.processor = processor
        self.replies = replies
        self.logprob = logprob
        self._device = torch.device(device)
        self.im_end_id = int(processor.tokenizer.convert_tokens_to_ids("<|im_end|>"))
        self.requests: list[GenerationRequest] = []
        """Every request seen, in order (tests inspect the prompts the protocol built)."""

    @classmethod
    def from_config(cls, config: EngineConfig, model=None, processor=None, replies: Replies = ()) -> ScriptedEngine:
        if processor is None:
            raise ValueError("the scripted engine needs the processor (its tokenizer encodes the replies)")
        device = "cpu" if config.device == "auto" else config.device
        return cls(processor, replies, device=device)

    @property
    def device(self) -> torch.device:
        return self._device

    def _reply(self, request: GenerationRequest) -> str:
        if callable(self.replies):
            return self.replies(request)
        try:
            return self.replies[request.trajectory][request.turn]
        except IndexError:
            raise IndexError(
                f"scripted engine: no reply for trajectory {request.trajectory}, turn {request.turn}"
            ) from None

    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig) -> list[Completion]:
        self.requests.extend(requests)
        completions = []
        for request in requests:
            ids = self.processor.tokenizer.encode(self._reply(request), add_special_tokens=False) + [self.im_end_id]
            finished = len(ids) <= sampling.max_new_tokens
            ids = ids[: sampling.max_new_tokens]
            text = self.processor.tokenizer.decode(ids[:-1] if finished else ids)
            completions.append(Completion(tuple(ids), (self.logprob,) * len(ids), text, finished))
        return completions

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """No-op: there are no weights."""

    def release(self) -> None:
        """No-op: nothing is held."""
