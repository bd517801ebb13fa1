"""Structured decoding for the ``hf`` engine: an xgrammar-backed logits processor with one grammar (or none) per row.

``transformers.generate`` calls the processor once per decoding step with the whole batch. Row ``i`` carries its own
``GrammarMatcher`` (its turn kind's grammar) or none (unconstrained). Each call first feeds every matcher the tokens
its row generated since the last call, then masks the next-token logits of the constrained rows to what their
grammar allows. It masks only (disallowed logits become -inf) and never rescales, so the engine's logprobs, taken
from the raw logits, keep their meaning. A complete grammar allows only ``<|im_end|>``, which ends the row.

xgrammar is imported lazily: nothing here loads it unless a request carries a grammar.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import transformers

from tooliqa_agent.types import GenerationRequest


class GrammarLogitsProcessor(transformers.LogitsProcessor):
    """Masks ``scores [N, V]`` row by row to each row's grammar; built for one ``generate`` call.

    ``matchers[i]``: row ``i``'s fresh ``xgrammar.GrammarMatcher`` or None (unconstrained). Prompts are left-padded
    to ``prompt_length``, so row ``i``'s generated token ``t`` is ``input_ids[i, prompt_length + t]``.

    ``first_token``: when given (``text -> token id``), a row whose grammar forces a text (xgrammar's jump-forward
    string: tags, attribute names, JSON keys) may emit only that text's own first token, so forced text takes its
    tokenizer's few tokens instead of whatever split into single characters a random model happens to sample. The
    text distribution is unchanged (the text is forced either way); only its tokenization, and so the number of
    decode steps, is. ``extensions`` (``text -> token ids``) names the tokens that begin with a forced text and go
    beyond it: when the grammar allows one (``"<"`` forced, ``"<answer>"`` and ``"<tool_call>"`` allowed), the step
    carries a choice and is not forced.
    """

    def __init__(
        self,
        matchers: Sequence,
        prompt_length: int,
        vocab_size: int,
        stop_token_id: int,
        first_token=None,
        extensions=None,
    ) -> None:
        import xgrammar as xgr

        self._xgr = xgr
        self.matchers = list(matchers)
        self.prompt_length = prompt_length
        self.vocab_size = vocab_size
        self.stop_token_id = stop_token_id
        self.rows = [row for row, matcher in enumerate(self.matchers) if matcher is not None]
        """Constrained rows."""
        self.consumed = [0] * len(self.matchers)
        """Generated tokens each matcher has accepted so far."""
        self.rejected: set[int] = set()
        """Rows whose matcher refused a token (cannot happen under the mask; kept safe: they are forced to stop)."""
        self.bitmask = xgr.allocate_token_bitmask(len(self.matchers), vocab_size)
        self.first_token = first_token
        self.extensions = extensions if extensions is not None else (lambda text: ())
        self.forced_steps: list[set[int]] = [set() for _ in self.matchers]
        """Per row, the generated positions where only one token was allowed (forced text: no decision)."""

    def _advance(self, input_ids: torch.Tensor) -> None:
        """Feed every live matcher the tokens its row generated since the last call (normally one)."""
        generated = input_ids.shape[1] - self.prompt_length
        live = [row for row in self.rows if row not in self.rejected and not self.matchers[row].is_terminated()]
        if not live or generated == 0:
            return
        start = min(self.consumed[row] for row in live)
        tail = input_ids[:, self.prompt_length + start :].tolist()
        for row in live:
            matcher = self.matchers[row]
            for token in tail[row][self.consumed[row] - start :]:
                self.consumed[row] += 1
                if not matcher.accept_token(token):
                    self.rejected.add(row)
                    break
                if matcher.is_terminated():
                    break

    def _allowed(self, row: int, token: int) -> bool:
        return bool(int(self.bitmask[row, token // 32]) >> (token % 32) & 1)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape != (len(self.matchers), self.vocab_size):
            raise ValueError(
                f"grammar processor: scores {tuple(scores.shape)} do not match {len(self.matchers)} rows × "
                f"vocabulary {self.vocab_size} (the model's text vocab_size)"
            )
        self._advance(input_ids)
        masked, forced = [], []
        for row in self.rows:
            matcher = self.matchers[row]
            if row in self.rejected or matcher.is_terminated():
                continue  # finished rows are padded by generate: their logits are never used
            matcher.fill_next_token_bitmask(self.bitmask, row)
            masked.append(row)
            if self.first_token is not None and (text := matcher.find_jump_forward_string()):
                token = self.first_token(text)
                # xgrammar's mask can refuse a token its jump-forward text begins with (seen: "evere" after "S"
                # in "Severe"); such a row keeps the plain mask
                if self._allowed(row, token) and not any(self._allowed(row, t) for t in self.extensions(text)):
                    forced.append((row, token))
        if masked:
            backend = "cpu" if scores.device.type == "cpu" else "torch_native"  # no Triton JIT needed on GPU boxes
            self._xgr.apply_token_bitmask_inplace(
                scores, self.bitmask.to(scores.device), vocab_size=self.vocab_size, indices=masked, backend=backend
            )
        step = input_ids.shape[1] - self.prompt_length
        for row, token in forced:
            self.forced_steps[row].add(step)
            keep = scores[row, token].clone()
            scores[row] = float("-inf")
            scores[row, token] = keep
        for row in self.rejected:
            if not self.matchers[row].is_terminated():
                stop = scores[row, self.stop_token_id].clone()
                scores[row] = float("-inf")
                scores[row, self.stop_token_id] = stop
        return scores


class XGrammarConstraintFactory:
    """Builds the per-call :class:`GrammarLogitsProcessor` for the ``hf`` engine (``ConstraintFactory`` protocol).

    Compiles each distinct grammar once (a rollout uses at most three) against the model's tokenizer, with
    ``<|im_end|>`` as the only stop token.
    """

    def __init__(self, tokenizer, model_config, canonical_forced_text: bool = False) -> None:
        import xgrammar as xgr

        self._xgr = xgr
        self._tokenizer = tokenizer
        self._first_tokens: dict[str, int] = {}
        self._extensions: dict[str, tuple[int, ...]] = {}
        self._token_texts: list[str] | None = None
        self.canonical_forced_text = canonical_forced_text
        self.vocab_size = int(model_config.get_text_config().vocab_size)
        self.stop_token_id = int(tokenizer.convert_tokens_to_ids("<|im_end|>"))
        info = xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=self.vocab_size, stop_token_ids=[self.stop_token_id]
        )
        self.compiler = xgr.GrammarCompiler(info)
        self._compiled: dict[str, object] = {}

    def compile(self, grammar: str):
        """The compiled grammar (cached); ``GrammarError`` for text xgrammar cannot read."""
        if grammar not in self._compiled:
            from tooliqa_agent.grammar import GrammarError  # grammar.py re-exports this module: import at use

            try:
                self._compiled[grammar] = self.compiler.compile_grammar(grammar)
            except RuntimeError as err:
                raise GrammarError(f"invalid structured-decoding grammar: {err}") from None
        return self._compiled[grammar]

    def matcher(self, grammar: str):
        """A fresh matcher of ``grammar`` at its start."""
        return self._xgr.GrammarMatcher(self.compile(grammar))

    def __call__(self, requests: Sequence[GenerationRequest], prompt_length: int) -> GrammarLogitsProcessor | None:
        if all(request.grammar is None for request in requests):
            return None
        matchers = [None if r.grammar is None else self.matcher(r.grammar) for r in requests]
        if not self.canonical_forced_text:
            return GrammarLogitsProcessor(matchers, prompt_length, self.vocab_size, self.stop_token_id)
        return GrammarLogitsProcessor(
            matchers, prompt_length, self.vocab_size, self.stop_token_id, self.first_token, self.extensions
        )

    def first_token(self, text: str) -> int:
        """The first token of ``text``'s own tokenization (cached: a grammar forces few distinct texts)."""
        if text not in self._first_tokens:
            self._first_tokens[text] = self._tokenizer.encode(text, add_special_tokens=False)[0]
        return self._first_tokens[text]

    def extensions(self, text: str) -> tuple[int, ...]:
        """Tokens whose text begins with ``text`` and is longer (cached; the vocabulary is decoded once)."""
        if text not in self._extensions:
            if self._token_texts is None:
                self._token_texts = [self._tokenizer.decode([i]) for i in range(len(self._tokenizer))]
            self._extensions[text] = tuple(
                i for i, token in enumerate(self._token_texts) if len(token) > len(text) and token.startswith(text)
            )
        return self._extensions[text]
