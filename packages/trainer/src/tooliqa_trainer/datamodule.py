"""Training and held-out images for GRPO: batches of B images, one dataset per batch, seeded and resumable.

Each training step's batch is a pure function of ``(seed, step)``: the datamodule only has to remember how many
batches were consumed (saved in the checkpoint) to resume at exactly the next one. With several training sets, a
step draws its dataset with probability proportional to the set's size, then takes the next B·world images of that
set's per-epoch permutation (so the rank reward compares images of one dataset, whose MOS scales agree).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch

from tooliqa_data import (
    HiddenEvidenceConfig,
    ImageError,
    IQAItem,
    check_image_header,
    load_dataset,
    load_image,
    make_hidden_evidence_set,
    make_synthetic_set,
    read_subsets,
)

__all__ = ["DatasetSpec", "HiddenEvidenceSpec", "IQADataModule", "ImageBatch", "SyntheticSpec", "plan_batch"]


@dataclass(frozen=True)
class DatasetSpec:
    """One labelled image set from the data package's registry."""

    name: str
    """Key of ``tooliqa_data.DATASETS`` (e.g. ``kadid10k``, ``koniq10k``, ``csv``)."""
    root: str
    """Image root directory (or the CSV manifest for ``csv``)."""
    labels: str | None = None
    """Label file; None = the registry's default for ``name``."""
    split: str | None = None
    """Split of the label file (e.g. ``train`` for KADID-10K's reference-disjoint training part)."""


@dataclass(frozen=True)
class SyntheticSpec:
    """The generated distortion set of the CPU demo (references × distortion types × levels, MOS from the level)."""

    out_dir: str = "runs/synthetic"
    """Where the images are written (reused when present)."""
    train_references: int = 8
    """Reference images of the training part."""
    held_out_references: int = 4
    """Reference images of the held-out part (different references: reference-disjoint like KADID's split)."""
    size: tuple[int, ...] = (64,)
    """Side lengths each reference draws its width and height from (multiples of 32 suit the 32-pixel grid)."""
    distortions: tuple[str, ...] | None = None
    """Distortion types (``tooliqa_data.synthetic.DISTORTIONS`` names); None = all of them."""
    seed: int = 0
    """Seed of the generated content (the held-out part uses ``seed + 1``: different references)."""


@dataclass(frozen=True)
class HiddenEvidenceSpec:
    """The generated hidden-evidence set of the CPU demo (``tooliqa_data.hidden``): per reference, plain images and
    images whose distortion only the Gamma Corrector or the Magnifier reveals."""

    out_dir: str = "runs/hidden-evidence"
    """Where the images are written (``train/`` and ``held_out/``, each with a ``manifest.csv`` holding a ``subset``
    column); rewritten identically for the same settings."""
    train_references: int = 24
    """Reference images of the training part (20 images each)."""
    held_out_references: int = 4
    """Reference images of the held-out part (different references: reference-disjoint like KADID's split)."""
    seed: int = 0
    """Seed of the generated content (the held-out part uses ``seed + 1``: different references)."""
    images: HiddenEvidenceConfig = field(default_factory=HiddenEvidenceConfig)
    """View side, scale of the scale-hidden originals, bit depth (and 8-bit gain) of the exposure-hidden ones."""


class ImageBatch:
    """B images of one step (this rank's share).

    A plain class, not a dataclass: Lightning's precision plugins walk dataclass batches to cast their float tensors
    (DeepSpeed's always does, ``DeepSpeedPrecision.convert_input``) and refuse the frozen ``IQAItem`` inside; and
    the batch's tensors must not be cast anyway (uint8 images; MOS in float32, where a bf16 cast would merge values
    and change the rank reward's ties).

    Attributes:
        step: index of the batch in the run (training) or in the held-out pass (validation).
        items: the labelled items.
        images: uint8 ``[3, H, W]`` per item, uint16 for 16-bit files (sizes may differ).
        mos: float ``[B]`` ground truth, higher = better.
    """

    __slots__ = ("step", "items", "images", "mos")

    def __init__(self, step: int, items: tuple[IQAItem, ...], images: list[torch.Tensor], mos: torch.Tensor) -> None:
        self.step, self.items, self.images, self.mos = step, items, images, mos

    def name_the_image(self, message: str) -> str:
        """``Agent.rollout``'s "image 3: …" with the batch position replaced by the file and its dataset."""
        position, _, reason = message.partition(": ")
        index = position.removeprefix("image ")
        if not index.isdigit() or int(index) >= len(self.items):
            return message
        item = self.items[int(index)]
        return f"{item.image} ({item.dataset}): {reason}"


def plan_batch(sizes: Sequence[int], step: int, batch: int, seed: int) -> tuple[int, list[int]]:
    """Which dataset and which of its item indices make the global batch of ``step``.

    Replays the dataset draws of steps ``0..step`` so each set walks through its own per-epoch permutations without
    repeats within an epoch. Pure: the same arguments always give the same batch.

    Args:
        sizes: number of items of each training set.
        step: the batch index in the run.
        batch: global batch size (B × world size).
        seed: the run's data seed.

    Returns:
        ``(dataset index, [batch] item indices)``.
    """
    used = [0] * len(sizes)
    choice = 0
    for s in range(step + 1):
        choice = random.Random(seed * 7919 + s).choices(range(len(sizes)), weights=sizes)[0]
        if s < step:
            used[choice] += 1
    n = sizes[choice]
    start = used[choice] * batch
    orders: dict[int, list[int]] = {}
    indices = []
    for k in range(start, start + batch):
        epoch, offset = divmod(k, n)
        if epoch not in orders:
            orders[epoch] = list(range(n))
            random.Random(f"{seed}/{choice}/{epoch}").shuffle(orders[epoch])
        indices.append(orders[epoch][offset])
    return choice, indices


class _TrainBatches(torch.utils.data.IterableDataset):
    """Batches ``position(), …, steps − 1`` of the plan, this rank's slice of each.

    The start is read when iteration begins, not when the loader is built: Lightning re-iterates the loader after a
    mid-epoch resume, and must continue from the datamodule's position, not from where this object was made.
    """

    def __init__(self, sets, batch: int, seed: int, position: Callable[[], int], steps: int, rank: int, world: int):
        self.sets, self.batch, self.seed = sets, batch, seed
        self.position, self.steps, self.rank, self.world = position, steps, rank, world

    def __len__(self) -> int:
        return max(0, self.steps - self.position())

    def __iter__(self) -> Iterator[ImageBatch]:
        sizes = [len(items) for items in self.sets]
        for step in range(self.position(), self.steps):
            choice, indices = plan_batch(sizes, step, self.batch * self.world, self.seed)
            mine = indices[self.rank * self.batch : (self.rank + 1) * self.batch]
            yield _load([self.sets[choice][i] for i in mine], step)


class _HeldOutBatches(torch.utils.data.IterableDataset):
    """The held-out items in order, this rank's share, in batches."""

    def __init__(self, items: list[IQAItem], batch: int, rank: int, world: int):
        self.items = items[rank::world]
        self.batch = batch

    def __len__(self) -> int:
        return -(-len(self.items) // self.batch)

    def __iter__(self) -> Iterator[ImageBatch]:
        for k in range(len(self)):
            yield _load(self.items[k * self.batch : (k + 1) * self.batch], k)


def _load(items: Sequence[IQAItem], step: int) -> ImageBatch:
    try:
        images = [load_image(item.image, keep_depth=True) for item in items]
    except ImageError as err:  # cut pixel data shows only when decoding; the header scan at set-up passed it
        reason = str(err).removeprefix(f"{err.path}: ")
        raise type(err)(err.path, f"{reason} (batch {step}); fix or remove it from the labels, then resume") from None
    return ImageBatch(
        step=step,
        items=tuple(items),
        images=images,
        mos=torch.tensor([float(item.mos) for item in items], dtype=torch.float32),
    )


class IQADataModule(L.LightningDataModule):
    """Training batches of B images per step and a held-out split for SRCC/PLCC."""

    def __init__(
        self,
        train: list[DatasetSpec] | None = None,
        val: list[DatasetSpec] | None = None,
        synthetic: SyntheticSpec | None = None,
        hidden_evidence: HiddenEvidenceSpec | None = None,
        batch_size: int = 12,
        val_batch_size: int = 8,
        max_val_items: int | None = None,
        steps: int = 680,
        seed: int = 42,
    ) -> None:
        """
        Args:
            train: training sets (KADID-10K's reference-disjoint ``train`` split for the paper).
            val: held-out sets for validation SRCC/PLCC.
            synthetic: generate a synthetic distortion set (its training part joins ``train``, its held-out part
                ``val``).
            hidden_evidence: generate the demo's hidden-evidence set (joins ``train`` and ``val`` likewise; its
                held-out ``subset`` column feeds the per-subset tool breakdown).
            batch_size: B, images per step on each rank (the paper: 12 on one process).
            val_batch_size: images per validation batch.
            max_val_items: cap on held-out images (a fixed, seeded subset), None = all.
            steps: training batches in the run (linked to ``trainer.max_steps`` by ``apps/train.py``).
            seed: data-order seed.
        """
        super().__init__()
        if batch_size < 1 or val_batch_size < 1:
            raise ValueError(f"IQADataModule: batch sizes must be ≥ 1, got {batch_size}, {val_batch_size}")
        if not train and synthetic is None and hidden_evidence is None:
            raise ValueError(
                "IQADataModule: give training sets (data.train) or a generated set (data.synthetic or "
                "data.hidden_evidence)"
            )
        self.train_specs, self.val_specs, self.synthetic = list(train or []), list(val or []), synthetic
        self.hidden_evidence = hidden_evidence
        self.subsets: dict[Path, str] = {}
        """Resolved image path → subset for held-out images whose manifest has a ``subset`` column."""
        self.batch_size, self.val_batch_size, self.max_val_items = batch_size, val_batch_size, max_val_items
        self.steps, self.seed = steps, seed
        self.position = 0  # training batches consumed; restored from the checkpoint on resume

    def prepare_data(self) -> None:
        # Rank 0 writes the images (deterministic in the seed); setup() on every rank reads the manifests back.
        spec = self.synthetic
        if spec is not None:
            out = Path(spec.out_dir)
            options = dict(size=spec.size, distortions=spec.distortions, name="synthetic")
            make_synthetic_set(out / "train", spec.train_references, spec.seed, **options)
            make_synthetic_set(out / "held_out", spec.held_out_references, spec.seed + 1, **options)
        hidden = self.hidden_evidence
        if hidden is not None:
            out = Path(hidden.out_dir)
            make_hidden_evidence_set(out / "train", hidden.train_references, hidden.seed, hidden.images)
            make_hidden_evidence_set(out / "held_out", hidden.held_out_references, hidden.seed + 1, hidden.images)

    def setup(self, stage: str | None = None) -> None:
        self.train_sets = [_labelled(spec) for spec in self.train_specs]
        self.val_items = [item for spec in self.val_specs for item in _labelled(spec)]
        if self.synthetic is not None:
            out = Path(self.synthetic.out_dir)
            self.train_sets.append(_labelled(DatasetSpec("csv", str(out / "train"))))
            self.val_items.extend(_labelled(DatasetSpec("csv", str(out / "held_out"))))
        if self.hidden_evidence is not None:
            out = Path(self.hidden_evidence.out_dir)
            self.train_sets.append(_labelled(DatasetSpec("csv", str(out / "train"))))
            self.val_items.extend(_labelled(DatasetSpec("csv", str(out / "held_out"))))
            self.subsets.update(read_subsets(out / "held_out" / "manifest.csv"))
        if self.max_val_items is not None and len(self.val_items) > self.max_val_items:
            self.val_items = random.Random(self.seed).sample(self.val_items, self.max_val_items)

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self):
        rank, world = self._rank_world()
        dataset = _TrainBatches(
            self.train_sets, self.batch_size, self.seed, lambda: self.position, self.steps, rank, world
        )
        return torch.utils.data.DataLoader(dataset, batch_size=None, generator=self._loader_generator())

    def warm_start_batches(self, batch: int, epoch: int) -> Iterator[ImageBatch]:
        """Every training image once in a seeded order per ``epoch``, this rank's share, ``batch`` images at a time
        (``tooliqa_trainer.warm_start``). Every rank gets as many batches (a remainder under the world size is left
        out of that epoch), so their gradient all-reduces pair up."""
        rank, world = self._rank_world()
        items = [item for items in self.train_sets for item in items]
        order = random.Random(self.seed * 104_729 + epoch).sample(items, len(items))
        mine = order[: len(order) - len(order) % world][rank::world]
        for k in range(0, len(mine), batch):
            yield _load(mine[k : k + batch], k // batch)

    def val_dataloader(self):
        if not self.val_items:
            return []
        rank, world = self._rank_world()
        return torch.utils.data.DataLoader(
            _HeldOutBatches(self.val_items, self.val_batch_size, rank, world),
            batch_size=None,
            generator=self._loader_generator(),
        )

    def _loader_generator(self) -> torch.Generator:
        # Without its own generator every new loader iterator draws a seed from the global one, so a resumed run
        # (a new training iterator at step k) would go on from another random state than the uninterrupted run.
        return torch.Generator().manual_seed(self.seed)

    def transfer_batch_to_device(self, batch: ImageBatch, device: torch.device, dataloader_idx: int) -> ImageBatch:
        # Images go to the policy's device: the tools run there (GPU-side ops on a GPU run).
        batch.images = [image.to(device) for image in batch.images]
        batch.mos = batch.mos.to(device)
        return batch

    def on_before_batch_transfer(self, batch: ImageBatch, dataloader_idx: int) -> ImageBatch:
        # Called right before the step that uses the batch (not when the loader prefetches it).
        if self.trainer is not None and self.trainer.training:
            self.position = batch.step + 1
        return batch

    def state_dict(self) -> dict[str, int]:
        return {"position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(f"checkpoint was trained with data seed {state['seed']}, config says {self.seed}")
        self.position = int(state["position"])


def _labelled(spec: DatasetSpec) -> list[IQAItem]:
    dataset = load_dataset(spec.name, spec.root, labels=spec.labels, split=spec.split)
    items = [item for item in dataset.items if item.mos is not None]
    if not items:
        raise ValueError(f"dataset {spec.name!r} at {spec.root}: no labelled items ({len(dataset.problems)} problems)")
    # Stop before step 0 rather than train on a silent subset (or crash at step 5,000): every listed image must
    # exist and show a usable header. The researcher fixes or removes the files named here.
    bad = [f"{p.source}:{p.line}: {p.message}" for p in dataset.problems]
    bad += [str(error) for item in items if (error := check_image_header(item.image)) is not None]
    if bad:
        shown = "; ".join(bad[:3]) + (f"; … {len(bad) - 3} more" if len(bad) > 3 else "")
        raise ValueError(
            f"dataset {spec.name!r} at {spec.root}: {len(bad)} of {len(dataset.items) + len(dataset.problems)} "
            f"images cannot be used for training: {shown}. Fix or remove them from the labels"
        )
    return items
