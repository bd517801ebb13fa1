"""The reliability corpus's shared switches: ``slow`` variants run only with ``TOOLIQA_SLOW=1`` (CI skips them)."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.environ.get("TOOLIQA_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="heavier reliability variant: run with TOOLIQA_SLOW=1")
    for item in items:
        if "slow" in item.keywords and "reliability" in str(item.fspath):
            item.add_marker(skip)
