"""Token bookkeeping: the conversation's ids built incrementally with the processor's own chat template.

Generated ids are appended verbatim (never re-tokenized). Everything else comes from the template: the first prompt
(system/tools block + the first user turn) is rendered with ``apply_chat_template(..., tools=schemas)``; every later
user or tool turn is the template's rendering of that one message, taken as the difference between a two-message
reference conversation with and without it — so the ids equal what the template renders for the whole conversation,
whatever template the checkpoint ships (TRL's suffix method, ``reference/rl_stack.md`` §3.2). Each image is one
``<|image_pad|>`` in the template and is expanded here to its grid size / 4 tokens.

That holds only for a template that renders a turn independently of the turns before it. Qwen's ``add_vision_id``
("Picture N: " before each image, N counted over the whole conversation) breaks it: every tool view would be
rendered "Picture 1:" while the full conversation says "Picture 2:", "Picture 3:". Such a template is refused when
``ChatTokens`` is built (checked by rendering an image turn after zero and after one earlier image).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

import torch

from tooliqa_agent.vision import image_token_count

_REFERENCE = (
    {"role": "user", "content": [{"type": "text", "text": "x"}]},
    {"role": "assistant", "content": "y"},
)
_REFERENCE_WITH_IMAGE = (
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "x"}]},
    {"role": "assistant", "content": "y"},
)


def _message(role: str, text: str, image: bool) -> dict:
    content = ([{"type": "image"}] if image else []) + [{"type": "text", "text": text}]
    return {"role": role, "content": content}


class ChatTokens:
    """Renders protocol turns to token ids (placeholders not yet expanded) and expands image runs."""

    def __init__(self, processor, tools: Sequence[dict] | None) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.tools = list(tools) if tools else None
        self.image_token_id = int(self.tokenizer.convert_tokens_to_ids("<|image_pad|>"))
        self.im_end = "<|im_end|>"
        self._suffix = lru_cache(maxsize=256)(self._render_suffix)
        base = self._render(list(_REFERENCE), generation_prompt=False)
        closing = "y" + self.im_end
        if closing not in base:
            raise ValueError("chat template: an assistant turn does not end with <|im_end|>; not a Qwen-style template")
        self.separator = self._encode(base[base.rindex(closing) + len(closing) :])
        """Template ids between an assistant's ``<|im_end|>`` and the next turn (``"\\n"`` for Qwen); never trained."""
        view = ("tool", "x", True)  # an image turn, as the rollout renders each tool view
        if self._turn_after(_REFERENCE, *view) != self._turn_after(_REFERENCE_WITH_IMAGE, *view):
            raise ValueError(
                "chat template: an image turn renders differently after earlier images (e.g. add_vision_id=True, "
                '"Picture N:" numbered over the conversation); turns are rendered one at a time, so the trajectory ids '
                "would disagree with the full render. Use a template (or template options) without add_vision_id"
            )

    def _render(self, messages: list[dict], generation_prompt: bool) -> str:
        return self.processor.apply_chat_template(
            messages, tools=self.tools, add_generation_prompt=generation_prompt, tokenize=False
        )

    def _encode(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer.encode(text, add_special_tokens=False))

    def first_prompt(self, text: str) -> tuple[int, ...]:
        """System/tools block + user turn [image, text] + the assistant header; one placeholder for the image."""
        return self._encode(self._render([_message("user", text, image=True)], generation_prompt=True))

    def _turn_after(self, reference: Sequence[dict], role: str, text: str, image: bool) -> str:
        """The text the template adds for one ``role`` message (and the next assistant header) after ``reference``."""
        base = self._render(list(reference), generation_prompt=False)
        full = self._render([*reference, _message(role, text, image)], generation_prompt=True)
        if not full.startswith(base):
            raise ValueError("chat template is not prefix-preserving: cannot render turns incrementally")
        closing = "y" + self.im_end
        return full[base.rindex(closing) + len(closing) :]

    def _render_suffix(self, role: str, text: str, image: bool) -> tuple[int, ...]:
        return self._encode(self._turn_after(_REFERENCE, role, text, image))

    def next_turn(self, role: Literal["user", "tool"], text: str, image: bool) -> tuple[int, ...]:
        """Ids after an assistant's ``<|im_end|>``: the separator, the ``role`` turn, the next assistant header."""
        return self._suffix(role, text, image)

    def expand(self, ids: Sequence[int], images: Sequence[torch.Tensor]) -> list[int]:
        """Replace the k-th ``<|image_pad|>`` of ``ids`` by image k's run of grid size / 4 placeholders."""
        out: list[int] = []
        k = 0
        for token in ids:
            if token != self.image_token_id:
                out.append(token)
                continue
            if k == len(images):
                raise ValueError(f"more <|image_pad|> placeholders than the {len(images)} images given")
            out.extend([token] * image_token_count(images[k], self.processor))
            k += 1
        if k != len(images):
            raise ValueError(f"{len(images)} images but {k} <|image_pad|> placeholders")
        return out
