"""Shared fixtures: the tiny Qwen3-VL kit (built once per session) and the read-only ``../shared`` data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ``../shared``; skips the calling test (saying why) where it is absent, as in a user's clone."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the real label files and images live in ../shared beside the project")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random tiny Qwen3-VL checkpoint directory, built offline once per test session."""
    from tooliqa_agent.tiny_model import build_tiny_qwen3vl

    return build_tiny_qwen3vl(tmp_path_factory.mktemp("tiny-qwen3vl"))


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    """(processor, model) loaded from the tiny checkpoint exactly as real weights load, fp32, eval mode."""
    import torch
    import transformers

    processor = transformers.AutoProcessor.from_pretrained(tiny_model_dir)
    model = transformers.AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return processor, model
