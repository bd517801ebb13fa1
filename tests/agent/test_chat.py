"""Token bookkeeping against the template's own full render, and the template options it cannot follow."""

from __future__ import annotations

import pytest

from tooliqa_agent.chat import ChatTokens

from ._checks import assistant, tool, user


class _WithTemplateOptions:
    """The processor, rendering every chat with extra template options (as a caller passing them would)."""

    def __init__(self, processor, **options) -> None:
        self._processor, self._options = processor, options

    def apply_chat_template(self, messages, **kwargs):
        return self._processor.apply_chat_template(messages, **kwargs, **self._options)

    def __getattr__(self, name):
        return getattr(self._processor, name)


def _incremental(chat: ChatTokens, processor, rounds: int) -> list[int]:
    """A conversation of the first prompt and ``rounds`` tool views, built turn by turn as the rollout does."""
    ids = list(chat.first_prompt("Rate it."))
    for k in range(rounds):
        ids += processor.tokenizer.encode(f"call {k}<|im_end|>", add_special_tokens=False)
        ids += chat.next_turn("tool", f"view {k}", image=True)
    return ids


def _full(processor, rounds: int) -> list[int]:
    messages = [user("Rate it.", True)]
    for k in range(rounds):
        messages += [assistant(f"call {k}"), tool(f"view {k}", True)]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return processor.tokenizer.encode(text, add_special_tokens=False)


def test_incremental_ids_equal_the_full_render(tiny_model):
    processor, _ = tiny_model
    assert _incremental(ChatTokens(processor, None), processor, 2) == _full(processor, 2)


def test_add_vision_id_is_refused(tiny_model):
    """With add_vision_id the template numbers images over the conversation ("Picture 2:" for the first tool view),
    which turn-by-turn rendering cannot reproduce: refused when ChatTokens is built, not silently wrong ids."""
    processor, _ = tiny_model
    numbered = _WithTemplateOptions(processor, add_vision_id=True)
    full = processor.tokenizer.decode(_full(numbered, 2))
    assert "Picture 1: <|vision_start|>" in full and "Picture 3: <|vision_start|>" in full  # a real template option
    with pytest.raises(ValueError, match="add_vision_id"):
        ChatTokens(numbered, None)
    assert _incremental(ChatTokens(_WithTemplateOptions(processor), None), processor, 1) == _full(processor, 1)
