"""Issue 16.1, training path: a bad image stops training at set-up with one error naming the file and the label
line (never a silent subset, never an obscure crash at step 5,000); pixel data cut after a sound header names the
file and the batch when it is decoded."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tooliqa_data import CorruptImageError
from tooliqa_trainer import DatasetSpec, IQADataModule


def _set(folder, n: int = 6) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), "RGB").save(folder / f"{i}.png")
    (folder / "manifest.csv").write_text("image,mos\n" + "".join(f"{i}.png,{1 + i % 4}\n" for i in range(n)))


def _module(folder) -> IQADataModule:
    return IQADataModule(train=[DatasetSpec("csv", str(folder))], batch_size=2, steps=3, seed=0)


def test_bad_training_images_stop_setup_naming_each_file(tmp_path):
    _set(tmp_path)
    (tmp_path / "2.png").write_bytes(b"not an image")
    (tmp_path / "4.png").unlink()
    module = _module(tmp_path)
    with pytest.raises(ValueError) as info:
        module.setup("fit")
    message = str(info.value)
    assert "2 of 6 images cannot be used for training" in message
    assert "manifest.csv:6: image not found" in message and "4.png" in message
    assert f"{tmp_path / '2.png'}: not a recognised image format" in message


def test_pixels_cut_after_a_sound_header_name_the_file_and_batch(tmp_path):
    _set(tmp_path)
    data = (tmp_path / "3.png").read_bytes()
    (tmp_path / "3.png").write_bytes(data[: len(data) // 2])  # the header still reads
    module = _module(tmp_path)
    module.setup("fit")
    with pytest.raises(CorruptImageError, match=r"3\.png: truncated or corrupt image data .*\(batch \d\); fix or"):
        for _ in module.train_dataloader():
            pass
