"""Helpers of the agent tests: scripted replies, hand-built expected conversations, trajectory invariants."""

from __future__ import annotations

import pytest
import torch

from tooliqa_agent import Trajectory, vllm_prompt

RUBRIC = (
    "<thinking>Fine texture.</thinking>\n<answer>\nSharpness: High - crisp\nNoise: None - clean\nArtifacts: Minor - "
    "slight\nExposure: Good - even\nSaliency Visibility: Subject Clear - ok\n</answer>"
)
MAGNIFY = (
    '<thinking>Check the corner.</thinking>\n<tool_call>\n{"name": "magnifier", "arguments": {"bbox_2d": '
    "[0, 0, 500, 500]}}\n</tool_call>"
)
GAMMA = '<thinking>Too dark.</thinking>\n<tool_call>\n{"name": "gamma_corrector", "arguments": {"mode": "brighten"}}\n</tool_call>'
BAD_JSON = (
    '<thinking>Zoom.</thinking>\n<tool_call>\n{"name": "magnifier", "arguments": {"bbox_2d": [0, 0, 5\n</tool_call>'
)
ANSWER = "<thinking>Good overall.</thinking> <answer>3.75</answer>"
NO_TAG = "<thinking>I think it is fine.</thinking> The score is 4."


def image(seed: int, height: int, width: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)


def user(text: str, with_image: bool = False) -> dict:
    return {"role": "user", "content": ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": text}]}


def tool(text: str, with_image: bool = False) -> dict:
    return {"role": "tool", "content": ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": text}]}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def expected_ids(processor, messages: list[dict], tools: list[dict] | None) -> list[int]:
    """The whole conversation rendered by the template in one go, without the "\\n" after the last <|im_end|>."""
    text = processor.apply_chat_template(messages, tools=tools, add_generation_prompt=False, tokenize=False)
    assert text.endswith("<|im_end|>\n")
    return processor.tokenizer.encode(text[:-1], add_special_tokens=False)


def runs(mask: list[bool]) -> list[tuple[int, int]]:
    """(start, end) of each run of True."""
    out, start = [], None
    for i, value in enumerate([*mask, False]):
        if value and start is None:
            start = i
        if not value and start is not None:
            out.append((start, i))
            start = None
    return out


def check_invariants(t: Trajectory, processor) -> None:
    """The Trajectory contract, checked on every trajectory the tests produce."""
    tokenizer = processor.tokenizer
    ids, mask = t.input_ids.tolist(), t.loss_mask.tolist()
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    image_pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    n = len(ids)
    assert t.loss_mask.shape == t.old_logprobs.shape == t.mm_token_type_ids.shape == (n,)
    # decoding the masked tokens reproduces exactly the assistant texts, one run per turn
    spans = runs(mask)
    assert len(spans) == len(t.turns)
    for (start, end), turn in zip(spans, t.turns, strict=True):
        closing = "<|im_end|>" if turn.finished else ""
        assert tokenizer.decode(ids[start:end]) == turn.text + closing
        assert end - start == turn.num_tokens
        if turn.finished:
            assert ids[end - 1] == im_end
            assert end == n or not mask[end]  # the template's "\n" after <|im_end|> is never trained
    assert mask[-1], "a trajectory ends with its last generated token"
    assert t.num_output_tokens == sum(turn.num_tokens for turn in t.turns)
    assert torch.all(t.old_logprobs[~t.loss_mask] == 0)
    # image runs: one per image, each as long as its grid / 4
    assert torch.equal(t.mm_token_type_ids, (t.input_ids == image_pad).long())
    image_runs = runs([tok == image_pad for tok in ids])
    assert len(image_runs) == len(t.images) == t.image_grid_thw.shape[0]
    for (start, end), grid in zip(image_runs, t.image_grid_thw, strict=True):
        assert end - start == int(grid.prod()) // 4
    for im, grid in zip(t.images, t.image_grid_thw, strict=True):
        assert im.dtype == torch.uint8 and im.shape[1] % 32 == 0 and im.shape[2] % 32 == 0
        assert (im.shape[1] // 16, im.shape[2] // 16) == tuple(grid[1:].tolist())
    # the vLLM prompt: the same conversation with each run collapsed to one token
    collapsed, images = vllm_prompt(t, image_pad)
    assert collapsed.count(image_pad) == len(images) == len(t.images)
    expanded = []
    k = 0
    for tok in collapsed:
        if tok == image_pad:
            expanded.extend([tok] * (int(t.image_grid_thw[k].prod()) // 4))
            k += 1
        else:
            expanded.append(tok)
    assert expanded == ids


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tiny model is all per-op overhead: one thread is faster than two, and immune to a busy 2-core CI box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
