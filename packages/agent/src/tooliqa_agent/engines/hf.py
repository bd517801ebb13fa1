"""The transformers engine: batched ``generate`` with left padding, stop at an end token, raw-logit logprobs.

The engine of tests, the CPU demo and single-GPU users. It shares the policy module with the trainer (no weight
copy: ``update_weights`` is a no-op). Logprobs come from ``output_logits=True`` (raw logits; ``output_scores`` are
post-processed and drift by ~4e-3, ``reference/env_probe.md`` §3) divided by the sampling temperature, the scale the
trainer's teacher-forced forward uses (SPEC §5). A turn ends on any id of ``stops.end_token_ids`` (``<|im_end|>`` and
the checkpoint's generation-config EOS ids), the set the ``vllm`` engine stops on.

Seeds: when every request carries its own ``seed`` (the evaluation's per-image seeds, ``tooliqa_agent.seeding``),
each row samples from its own generator (:class:`_RowSampler`), so a row's tokens do not depend on its batch-mates;
otherwise the whole call samples from one seed, ``sampling.seed`` plus a per-call counter (training rollouts), , mixed
with the rank (:func:`tooliqa_agent.seeding.rank_seed`) so that the ranks of a multi-process run draw different samples.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from tooliqa_agent.engines.stops import end_token_ids
from tooliqa_agent.seeding import rank_seed
from tooliqa_agent.types import Completion, ConstraintFactory, EngineConfig, GenerationRequest, SamplingConfig
from tooliqa_agent.vision import image_inputs

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA when present, else CPU; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class _OnCopy:
    """Hands a constraint a copy of the scores: ``generate`` keeps the very tensor it passes to the processors as the
    "raw" ``output_logits``, so an in-place mask there would leak into the logprobs."""

    def __init__(self, constraint) -> None:
        self.constraint = constraint

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return self.constraint(input_ids, scores.clone())


class _RowSampler:
    """Samples each row from its own seeded generator, as the last logits processor of a greedy ``generate``.

    ``generate``'s own sampling draws every row from one RNG, so a row's tokens depend on how many rows drew before
    it. Here the row's distribution is warped exactly as ``generate`` would (temperature, then top-k, then top-p,
    after the suppression and grammar masks), one token is drawn from the row's generator, and every other token is
    set to -inf so the greedy step picks it. Raw logits (``output_logits``) are untouched: logprobs stay the same.
    """

    def __init__(self, seeds: Sequence[int], sampling: SamplingConfig, device: torch.device) -> None:
        from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

        self.warpers = [TemperatureLogitsWarper(sampling.temperature)]
        if sampling.top_k > 0:
            self.warpers.append(TopKLogitsWarper(sampling.top_k))
        if sampling.top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(sampling.top_p))
        self.generators = [torch.Generator(device=device).manual_seed(int(seed)) for seed in seeds]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for warper in self.warpers:
            scores = warper(input_ids, scores)
        probs = torch.softmax(scores.float(), -1)
        chosen = torch.cat([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, self.generators, strict=True)])
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, chosen[:, None], 0.0)


class HFEngine:
    """``model.generate`` over a batch of requests with different image counts and sizes."""

    def __init__(
        self,
        model,
        processor,
        constraint_factory: ConstraintFactory | None = None,
        canonical_forced_text: bool = False,
    ) -> None:
        self.model = model
        self.processor = processor
        self.constraint_factory = constraint_factory
        self.canonical_forced_text = canonical_forced_text
        tokenizer = processor.tokenizer
        self.end_ids = end_token_ids(tokenizer, model.generation_config.eos_token_id)
        """Ids that end a turn (``<|im_end|>`` first); generation stops on each of them."""
        self.pad_id = int(tokenizer.pad_token_id)
        self.image_token_id = int(model.config.image_token_id)
        # a generated vision token would be read as an image slot by the next forward: never sample one
        vision = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
        self.suppressed = [int(tokenizer.convert_tokens_to_ids(token)) for token in vision]
        self.seed_offset = 0
        """Generate calls so far: call k samples with ``sampling.seed + k`` (reproducible without a global RNG reset);
        a resumable run's state, checkpointed by the trainer."""
        self.rank = _rank()
        """This process's rank: a call's seed is ``rank_seed(sampling.seed + k, rank)``, so ranks draw different
        samples (rank 0 and a single process: ``sampling.seed + k``)."""

    @classmethod
    def from_config(
        cls, config: EngineConfig, model=None, processor=None, constraint_factory: ConstraintFactory | None = None
    ) -> HFEngine:
        import transformers

        if model is None or processor is None:
            if config.model is None:
                raise ValueError("EngineConfig.model: the hf engine needs a checkpoint directory or a loaded model")
        if processor is None:
            processor = transformers.AutoProcessor.from_pretrained(config.model)
        if model is None:
            model = transformers.AutoModelForImageTextToText.from_pretrained(
                config.model, dtype=_DTYPES[config.dtype], attn_implementation=config.attn_implementation
            )
            model = model.to(resolve_device(config.device)).eval()
        return cls(model, processor, constraint_factory, canonical_forced_text=config.canonical_forced_text)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _constraint(self, requests: Sequence[GenerationRequest], prompt_length: int):
        if self.constraint_factory is None:
            if not any(r.grammar is not None for r in requests):
                return None
            from tooliqa_agent.engines.constraints import (
                XGrammarConstraintFactory,  # xgrammar is heavy: only when asked for
            )

            self.constraint_factory = XGrammarConstraintFactory(
                self.processor.tokenizer, self.model.config, canonical_forced_text=self.canonical_forced_text
            )
        constraint = self.constraint_factory(requests, prompt_length)
        return None if constraint is None else _OnCopy(constraint)

    def _batch(self, requests: Sequence[GenerationRequest]) -> dict[str, torch.Tensor]:
        """Left-padded model inputs: input_ids/attention_mask/mm_token_type_ids [N, P], pixel_values, grid [n, 3]."""
        device = self.device
        length = max(len(r.prompt_ids) for r in requests)
        ids = torch.full((len(requests), length), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(requests), length), dtype=torch.long)
        for row, request in enumerate(requests):
            ids[row, length - len(request.prompt_ids) :] = torch.tensor(request.prompt_ids, dtype=torch.long)
            attention[row, length - len(request.prompt_ids) :] = 1
        images = [image.to(device) for r in requests for image in r.images]
        pixel_values, grid = image_inputs(images, self.processor, dtype=self.model.dtype)
        n_placeholders = int((ids == self.image_token_id).sum())
        if n_placeholders != int(grid.prod(-1).sum()) // 4:
            raise ValueError(
                f"requests hold {n_placeholders} <|image_pad|> tokens but their images need {int(grid.prod(-1).sum()) // 4}"
            )
        return {
            "input_ids": ids.to(device),
            "attention_mask": attention.to(device),
            "mm_token_type_ids": (ids == self.image_token_id).long().to(device),
            "pixel_values": pixel_values.to(device),
            "image_grid_thw": grid.to(device),
        }

    @torch.no_grad()
    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig) -> list[Completion]:
        if not requests:
            return []
        from transformers import LogitsProcessorList

        inputs = self._batch(requests)
        prompt_length = inputs["input_ids"].shape[1]
        constraint = self._constraint(requests, prompt_length)
        greedy = sampling.temperature == 0
        processors = [constraint] if constraint is not None else []
        per_row = not greedy and all(r.seed is not None for r in requests)
        if per_row:  # the rows draw from their own generators: generate itself stays greedy
            processors.append(_RowSampler([r.seed for r in requests], sampling, self.device))
        sample = not greedy and not per_row
        seed = rank_seed(sampling.seed + self.seed_offset, self.rank)
        self.seed_offset += 1
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            out = self.model.generate(
                **inputs,
                do_sample=sample,
                temperature=sampling.temperature if sample else None,
                top_p=sampling.top_p if sample else None,
                top_k=sampling.top_k if sample else None,
                repetition_penalty=1.0,  # a checkpoint's default penalty would break logprob = log_softmax(logits / T)
                max_new_tokens=sampling.max_new_tokens,
                eos_token_id=list(self.end_ids),
                suppress_tokens=self.suppressed,
                pad_token_id=self.pad_id,
                logits_processor=LogitsProcessorList(processors) if processors else None,
                output_logits=True,
                return_dict_in_generate=True,
            )
        new = out.sequences[:, prompt_length:]
        scale = sampling.logprob_temperature
        # one step at a time: never materialise [N, T, V] log-softmaxes (15 GB at 8B shapes, batch 48, 512 tokens)
        logprobs = torch.stack(
            [
                torch.log_softmax(step.float() / scale, -1).gather(-1, new[:, t, None])[:, 0]
                for t, step in enumerate(out.logits)
            ],
            1,
        )
        forced = getattr(getattr(constraint, "constraint", None), "forced_steps", None) or [set()] * len(requests)
        rows = zip(new.tolist(), logprobs.tolist(), forced, strict=True)
        return [self._completion(row, lp, steps) for row, lp, steps in rows]

    def _completion(self, row: list[int], logprobs: list[float], forced: set[int]) -> Completion:
        stop = next((i for i, token in enumerate(row) if token in self.end_ids), None)
        finished = stop is not None
        end = stop + 1 if finished else len(row)
        token_ids = tuple(row[:end])
        text = self.processor.tokenizer.decode(token_ids[: end - 1] if finished else token_ids)
        return Completion(
            token_ids=token_ids,
            logprobs=tuple(logprobs[:end]),
            text=text,
            finished=finished,
            forced=tuple(step in forced for step in range(end)) if forced else (),
        )

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """No-op: the engine generates with the policy module itself."""

    def release(self) -> None:
        """Nothing to free: the model belongs to the caller."""


def _rank() -> int:
    """This process's rank in torch.distributed (0 when it is not initialised)."""
    distributed = torch.distributed
    return distributed.get_rank() if distributed.is_available() and distributed.is_initialized() else 0
