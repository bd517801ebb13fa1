"""The hidden-evidence set: deterministic, reference-disjoint, half hidden, and each subset's evidence where it says.

The "where" checks use a cheap pixel statistic on the views the agent would build (the demo kit's 128 × 128 budget):
the spread of the level-to-level differences, in the original view and in the right tool's view.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter

import numpy as np
import torch

from tooliqa_data import HiddenEvidenceConfig, load_image, make_hidden_evidence_set, read_subsets
from tooliqa_tools import MagnifierConfig, gamma_correct, magnify, resize

VIEW = 128  # the demo kit's max_pixels = 128 × 128


def _digest(folder) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def test_byte_identical_per_seed_and_reference_disjoint(tmp_path):
    make_hidden_evidence_set(tmp_path / "a", 2, seed=5)
    make_hidden_evidence_set(tmp_path / "b", 2, seed=5)
    make_hidden_evidence_set(tmp_path / "c", 2, seed=6)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    a = (tmp_path / "a" / "images" / "r000_detail_a_1.png").read_bytes()
    assert a != (tmp_path / "c" / "images" / "r000_detail_a_1.png").read_bytes()  # another seed: other content


def test_manifest_has_the_subset_column_and_half_is_hidden(tmp_path):
    items = make_hidden_evidence_set(tmp_path, 3, seed=0)
    with (tmp_path / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["image", "mos", "reference", "distortion", "level", "subset"]
    assert len(rows) == len(items) == 3 * 4 * 5
    assert Counter(row["subset"] for row in rows) == {"plain": 30, "exposure_hidden": 15, "scale_hidden": 15}
    subsets = read_subsets(tmp_path / "manifest.csv")
    assert {subsets[item.image.resolve()] for item in items} == {"plain", "exposure_hidden", "scale_hidden"}
    assert sorted({float(row["mos"]) for row in rows}) == [1.0, 1.8, 2.6, 3.4, 4.2]
    sizes = {row["subset"]: load_image(tmp_path / row["image"]).shape[1:] for row in rows}
    assert sizes == {"plain": (VIEW, VIEW), "exposure_hidden": (VIEW, VIEW), "scale_hidden": (4 * VIEW, 4 * VIEW)}


def _level_spread(views: list[torch.Tensor]) -> float:
    """Mean absolute pixel difference between consecutive levels of one reference (how visible the level is)."""
    arrays = [v.float() for v in views]
    return float(np.mean([(b - a).abs().mean().item() for a, b in zip(arrays, arrays[1:])]))


def _levels(root, name: str) -> list[torch.Tensor]:
    return [load_image(root / "images" / f"r000_{name}_{level}.png") for level in range(1, 6)]


def test_the_evidence_is_weak_in_the_original_view_and_clear_in_the_right_tools_view(tmp_path):
    make_hidden_evidence_set(tmp_path, 1, seed=0, config=HiddenEvidenceConfig(exposure_bits=8))
    # 8-bit exposure-hidden: the levels differ by a few grey values in the original, more once brightened (γ = 0.5)
    dark = _levels(tmp_path, "dark_detail")
    in_original = _level_spread(dark)
    brightened = _level_spread([gamma_correct(v, 0.5) for v in dark])
    assert in_original < 0.1 * _level_spread(_levels(tmp_path, "detail_a"))  # ≈ 1 grey value against 14
    assert brightened > 1.5 * in_original  # d(√x) = dx / 2√x: ×2.2 at the set’s grey levels
    # scale-hidden: the 4× pre-sized global view has averaged the 3-px texture away; any crop up to half the side
    # (zoom ≤ 4, 128 × 128 budget) shows it
    fine = _levels(tmp_path, "fine_detail")
    global_views = [resize([v], (VIEW, VIEW))[0] for v in fine]
    config = MagnifierConfig(min_pixels=1024, max_pixels=VIEW * VIEW)
    detail = _level_spread(_levels(tmp_path, "detail_a"))
    assert _level_spread(global_views) < 0.1 * detail
    for box in ([0, 0, 500, 500], [500, 250, 1000, 750], [100, 600, 350, 850]):
        crops = [magnify(v, box, config)[0] for v in fine]
        assert _level_spread(crops) > 5 * _level_spread(global_views)


def test_a_reader_never_sees_half_a_file_while_the_set_is_rewritten(tmp_path):
    """Ablations started side by side rewrite the same set while the others read it: every read decodes whole, and
    no temporary file is left."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    make_hidden_evidence_set(tmp_path, 1, seed=0)
    paths = sorted((tmp_path / "images").iterdir())
    done, failures = threading.Event(), []

    def read_until_done():
        while not done.is_set():
            for path in paths:
                try:
                    with Image.open(path) as image:
                        image.load()
                except OSError as err:  # a truncated or empty file
                    failures.append(f"{path.name}: {err}")

    reader = threading.Thread(target=read_until_done)
    reader.start()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda _: make_hidden_evidence_set(tmp_path, 1, seed=0), range(4)))
    done.set()
    reader.join()
    assert not failures, failures[:3]
    assert not list(tmp_path.rglob("*.tmp"))


def test_16_bit_exposure_hidden_levels_are_byte_identical_in_8_bits_and_apart_once_brightened(tmp_path):
    from tooliqa_tools import gamma_table16, to_uint8

    make_hidden_evidence_set(tmp_path, 1, seed=0)  # exposure_bits 16 is the default
    deep = [
        load_image(tmp_path / "images" / f"r000_dark_detail_{level}.png", keep_depth=True) for level in (1, 2, 3, 4, 5)
    ]
    assert all(image.dtype == torch.uint16 for image in deep)
    eight = [to_uint8(image) for image in deep]
    assert all(torch.equal(eight[0], image) for image in eight)  # the global view cannot tell the levels apart
    assert eight[0].unique().tolist() == [1, 2]  # the silhouette on two 8-bit levels
    assert torch.equal(load_image(tmp_path / "images" / "r000_dark_detail_1.png"), eight[0])  # the default 8-bit load
    brightened = [gamma_table16(0.5)[image.long()].float() for image in deep]
    on_level_1 = eight[0] == 1
    spread = [view[on_level_1].std().item() for view in brightened]
    assert spread == sorted(spread, reverse=True) and spread[0] > 3 and spread[-1] < 1  # less texture, less spread
