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


def test_an_image_the_processor_refuses_names_its_file_in_training(tmp_path):
    """An image the agent cannot pre-size (an aspect ratio over the processor's bound) ends the step with an error
    naming its file and dataset, not its position in the batch."""
    from types import SimpleNamespace

    import torch

    from tooliqa_data import IQAItem
    from tooliqa_trainer import GRPOModule, RolloutConfig
    from tooliqa_trainer.datamodule import ImageBatch

    class Refusing:
        def rollout(self, images, group_size, sampling):
            raise ValueError("image 1: aspect ratio 250:1 is over the processor's 200:1")

    items = (IQAItem(tmp_path / "a.png", 3.0, "kadid"), IQAItem(tmp_path / "thin.png", 2.0, "kadid"))
    batch = ImageBatch(7, items, [torch.zeros(3, 32, 32, dtype=torch.uint8)] * 2, torch.tensor([3.0, 2.0]))
    module = SimpleNamespace(
        rollout_config=RolloutConfig(), global_step=7, agent=Refusing(), policy=torch.nn.Linear(1, 1)
    )
    with pytest.raises(ValueError, match=r"training step 7: .*thin\.png \(kadid\): aspect ratio 250:1"):
        GRPOModule.rollout(module, batch)
    assert module.policy.training  # the policy is back in train mode
