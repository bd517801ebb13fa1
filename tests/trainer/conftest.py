"""Trainer test helpers: a synthetic image set and GRPOModule subclasses with a scripted engine or a test reward."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A tiny synthetic distortion set written once: train (2 references) and held-out (1 reference)."""
    from tooliqa_data import make_synthetic_set

    root = tmp_path_factory.mktemp("synthetic")
    options = dict(size=(64,), distortions=("blur", "noise"), name="synthetic")
    make_synthetic_set(root / "train", 2, 0, **options)
    make_synthetic_set(root / "held_out", 1, 1, **options)
    return root


@pytest.fixture(scope="session")
def demo_kit(tmp_path_factory):
    """A tiny kit whose tokenizer knows the protocol's words (digits, tags, tool names are tokens of their own)."""
    from tooliqa_agent.tiny_model import TinyModelConfig, build_tiny_qwen3vl

    config = TinyModelConfig(min_pixels=1024, max_pixels=4096, protocol_vocabulary=True, bpe_vocab_size=2000)
    return build_tiny_qwen3vl(tmp_path_factory.mktemp("demo-kit"), config)
