"""Fixtures the grammar tests share: the default tiny tokenizer and an xgrammar compiler over it."""

from __future__ import annotations

import pytest

from tooliqa_agent.tiny_model import TinyModelConfig, build_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(TinyModelConfig())


@pytest.fixture(scope="module")
def compiler(tokenizer):
    import xgrammar as xgr

    stop = tokenizer.convert_tokens_to_ids("<|im_end|>")
    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=len(tokenizer), stop_token_ids=[stop])
    return xgr.GrammarCompiler(info)
