"""The hf engine: logprobs agree with the trainer's teacher-forced forward; left-padded batching changes nothing."""

from __future__ import annotations

import sys

import pytest
import torch

from tooliqa_agent import Agent, EngineConfig, GenerationRequest, ProtocolConfig, SamplingConfig, collate, make_engine
from tooliqa_agent.chat import ChatTokens
from tooliqa_agent.engines.hf import HFEngine
from tooliqa_agent.forcing import ForcedTurns

from ._checks import GAMMA, MAGNIFY, RUBRIC, check_invariants, image, one_thread  # noqa: F401 (autouse fixture)


def teacher_forced_logprobs(model, batch, temperature: float) -> torch.Tensor:
    """[N, L] logprob of input_ids[t] from the logits at t-1 (0 at t=0), on the trainer's temperature scale."""
    logits = model(**batch.model_inputs()).logits.float() / temperature
    logprobs = torch.log_softmax(logits[:, :-1], -1).gather(-1, batch.input_ids[:, 1:, None])[..., 0]
    return torch.nn.functional.pad(logprobs, (1, 0))


@torch.no_grad()
def test_logprobs_match_teacher_forcing_with_two_tool_views(tiny_model):
    processor, model = tiny_model
    scripts = {}
    for trajectory in range(2):  # both trajectories: rubric, magnifier, gamma forced; the final turn sampled freely
        scripts.update({(trajectory, 0): RUBRIC, (trajectory, 1): MAGNIFY, (trajectory, 2): GAMMA})
    engine = HFEngine(model, processor, constraint_factory=ForcedTurns(processor.tokenizer, scripts))
    agent = Agent(engine, processor, ProtocolConfig())
    sampling = SamplingConfig(temperature=0.9, max_new_tokens=80, seed=7)
    [row] = agent.rollout([image(3, 96, 128)], group_size=2, sampling=sampling)
    for t in row:
        check_invariants(t, processor)
        assert len(t.images) == 3 and t.num_successful_calls == 2
        assert [turn.text for turn in t.turns[:3]] == [RUBRIC, MAGNIFY, GAMMA]
        assert t.turns[3].kind == "final" and t.turns[3].num_tokens > 0
    assert row[0].turns[3].text != row[1].turns[3].text  # sampled, not forced
    batch = collate(row, processor)
    assert batch.input_ids.shape == (2, max(len(t.input_ids) for t in row))
    assert batch.image_grid_thw.shape == (6, 3)
    expected = teacher_forced_logprobs(model, batch, sampling.temperature)
    mask = batch.loss_mask
    assert mask.sum() == sum(t.num_output_tokens for t in row)
    torch.testing.assert_close(batch.old_logprobs[mask], expected[mask], atol=1e-4, rtol=0)
    assert batch.old_logprobs[mask].min() < -1  # real logprobs, not the forced processor's 0


@torch.no_grad()
def test_left_padded_batch_equals_one_by_one(tiny_model):
    """Requests with 1 and 3 images of different sizes: batched greedy output = each request alone."""
    processor, model = tiny_model
    engine = HFEngine(model, processor)
    chat = ChatTokens(processor, None)
    first = chat.first_prompt("Rate it.")
    a, b, c = image(4, 64, 96), image(5, 128, 96), image(6, 32, 64)
    long_prompt = (
        list(first)
        + processor.tokenizer.encode("ok<|im_end|>", add_special_tokens=False)
        + list(chat.next_turn("tool", "view one", image=True))[:-3]
        + list(chat.next_turn("tool", "view two", image=True))
    )
    requests = [
        GenerationRequest(tuple(chat.expand(first, [a])), (a,)),
        GenerationRequest(tuple(chat.expand(long_prompt, [b, c, a])), (b, c, a)),
    ]
    sampling = SamplingConfig(temperature=0.0, max_new_tokens=6)
    together = engine.generate(requests, sampling)
    alone = [engine.generate([r], sampling)[0] for r in requests]
    for x, y in zip(together, alone, strict=True):
        assert x.token_ids == y.token_ids and len(x.token_ids) == 6 and not x.finished
        torch.testing.assert_close(torch.tensor(x.logprobs), torch.tensor(y.logprobs), atol=1e-4, rtol=0)


@torch.no_grad()
def test_engine_seed_and_registry(tiny_model):
    processor, model = tiny_model
    engine = make_engine(EngineConfig(name="hf"), model=model, processor=processor)
    assert isinstance(engine, HFEngine) and engine.device == torch.device("cpu")
    chat = ChatTokens(processor, None)
    im = image(8, 64, 64)
    request = GenerationRequest(tuple(chat.expand(chat.first_prompt("Rate it."), [im])), (im,))
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=8, seed=3)
    first = HFEngine(model, processor).generate([request, request], sampling)
    again = HFEngine(model, processor).generate([request, request], sampling)
    assert [c.token_ids for c in first] == [c.token_ids for c in again]
    assert first[0].token_ids != first[1].token_ids  # two samples of one prompt differ
    with pytest.raises(ValueError, match="unknown engine"):
        make_engine(EngineConfig(name="nope"))
    assert "vllm" not in sys.modules  # the vllm engine is imported only when chosen


def test_ranks_draw_different_samples(tiny_model, monkeypatch):
    """The same request on rank 0 and rank 1 of a run: other samples (the call seed mixed with the rank; an offset
    of rank << 32 would not do: a CPU generator keeps 32 bits), the same on rank 0 as alone."""
    processor, model = tiny_model
    chat = ChatTokens(processor, None)
    im = image(8, 64, 64)
    request = GenerationRequest(tuple(chat.expand(chat.first_prompt("Rate it."), [im])), (im,))
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=8, seed=3)
    alone = HFEngine(model, processor)
    assert alone.rank == 0
    with monkeypatch.context() as patch:  # the engine is built on rank 1 of an initialised group
        patch.setattr(torch.distributed, "is_initialized", lambda: True)
        patch.setattr(torch.distributed, "get_rank", lambda: 1)
        second = HFEngine(model, processor)
    assert second.rank == 1
    assert alone.generate([request], sampling)[0].token_ids != second.generate([request], sampling)[0].token_ids


@torch.no_grad()
def test_every_generation_config_end_token_finishes_a_turn(tiny_model):
    """The tiny kit's generation config ends on ``<|im_end|>`` and ``<|endoftext|>`` (as Qwen3-VL-8B-Instruct's): a
    turn forced to ``3<|endoftext|>4 4…`` stops after ``<|endoftext|>`` as a finished turn, exactly as vLLM's would."""
    processor, model = tiny_model
    tokenizer = processor.tokenizer
    im_end, eot, three = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>", "3"])
    engine = HFEngine(model, processor, constraint_factory=ForcedTurns(tokenizer, {(0, 0): "3<|endoftext|>4 4 4"}))
    chat = ChatTokens(processor, None)
    im = image(9, 64, 64)
    request = GenerationRequest(tuple(chat.expand(chat.first_prompt("Rate it."), [im])), (im,))
    (completion,) = engine.generate([request], SamplingConfig(temperature=1.0, max_new_tokens=12))
    assert completion.token_ids == (three, eot) and completion.finished and completion.text == "3"
    assert len(completion.logprobs) == 2 and engine.end_ids == (im_end, eot)
