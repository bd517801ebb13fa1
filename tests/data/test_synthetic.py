"""The synthetic demo set: deterministic by seed, MOS following the level, quality visibly falling with the level."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from tooliqa_data import DISTORTIONS, level_mos, load_dataset, load_image, make_synthetic_set

from ._assessors import sharpness


def _digest(folder) -> str:
    files = sorted((folder / "images").iterdir()) + [folder / "manifest.csv"]
    return hashlib.sha256(b"".join(f.name.encode() + f.read_bytes() for f in files)).hexdigest()


def test_deterministic_by_seed(tmp_path):
    a = make_synthetic_set(tmp_path / "a", 1, seed=5)
    b = make_synthetic_set(tmp_path / "b", 1, seed=5)
    make_synthetic_set(tmp_path / "c", 1, seed=6)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")
    assert [i.image.name for i in a] == [i.image.name for i in b]
    assert len(a) == len(DISTORTIONS) * 5


def test_mos_mapping_and_manifest(synthetic_dir):
    assert [level_mos(level) for level in range(1, 6)] == [4.2, 3.4, 2.6, 1.8, 1.0]
    with pytest.raises(ValueError):
        level_mos(6)
    assert level_mos(0) == 5.0
    dataset = load_dataset("csv", synthetic_dir, dataset_name="synthetic")
    assert len(dataset.items) == 45 and not dataset.problems
    for item in dataset.items:
        level = int(item.image.stem.rsplit("_", 1)[1])
        assert item.mos == level_mos(level)
        image = load_image(item.image)
        assert min(image.shape[1:]) >= 96 and max(image.shape[1:]) <= 160


def test_every_distortion_grows_with_the_level(tmp_path):
    """Per reference and type: the distance from the pristine reference grows strictly with the level."""
    items = make_synthetic_set(tmp_path, 3, seed=1, size=96, references=True)
    by_group: dict[tuple[str, str], dict[int, np.ndarray]] = {}
    for item in items:
        ref, kind_level = item.image.stem.split("_", 1)
        kind, level = kind_level.rsplit("_", 1)
        by_group.setdefault((ref, kind), {})[int(level)] = load_image(item.image).float().numpy()
    assert len(by_group) == 3 * (len(DISTORTIONS) + 1) and all(
        i.mos == 5.0 for i in items if "reference" in i.image.name
    )
    for (ref, kind), levels in by_group.items():
        if kind == "reference":
            continue
        pristine = by_group[(ref, "reference")][0]
        distances = [np.abs(levels[level] - pristine).mean() for level in range(1, 6)]
        assert all(b > a for a, b in zip(distances, distances[1:])), (ref, kind, distances)


def test_blur_levels_are_visibly_less_sharp(synthetic_dir):
    for ref in range(3):
        values = [sharpness(load_image(synthetic_dir / f"images/r{ref:03d}_blur_{lv}.png")) for lv in range(1, 6)]
        assert all(b < a for a, b in zip(values, values[1:])), values
        assert values[-1] < 0.35 * values[0]  # level 5 is unmistakable


def test_bad_arguments(tmp_path):
    with pytest.raises(KeyError, match="unknown distortions"):
        make_synthetic_set(tmp_path, 1, distortions=("sparkle",))
    with pytest.raises(ValueError, match="≥ 32"):
        make_synthetic_set(tmp_path, 1, size=16)
