"""Fixtures for the data tests: a small synthetic set."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory):
    """A small synthetic set (3 references x blur, motion blur, pixelate x 5 levels = 45 images)."""
    from tooliqa_data import make_synthetic_set

    out = tmp_path_factory.mktemp("synthetic")
    make_synthetic_set(out, 3, seed=0, distortions=("blur", "motion_blur", "pixelate"))
    return out
