"""Small trainer callbacks that are not part of the algorithm."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from tooliqa_trainer.tool_report import REWARD_PARTS, call_selectivity, draw_curves, tool_breakdown

__all__ = ["StepProgressBar", "ToolReport", "TorchThreads"]


class TorchThreads(L.Callback):
    """Set torch's intra-op CPU thread count for the run.

    Why: a tiny model's ops are microseconds long, and on a small, busy CPU box OpenMP threads waiting for each other
    dominate — measured on the 2-core dev machine under load: a [32, 64] × [64, 128] matmul took 76 µs with 1 thread
    and 6.2 ms with 2, and a CPU rollout ran 16× faster with 1 thread. GPU runs leave it unset.
    """

    def __init__(self, threads: int = 1) -> None:
        """
        Args:
            threads: intra-op threads (``torch.set_num_threads``).
        """
        if threads < 1:
            raise ValueError(f"TorchThreads.threads must be ≥ 1, got {threads}")
        self.threads = threads
        torch.set_num_threads(threads)  # at construction: before the model loads and the sanity check runs

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        torch.set_num_threads(self.threads)


class StepProgressBar(RichProgressBar):
    """The training bar counts optimizer steps out of ``max_steps`` ("step 40/120"), not batches of an unbounded
    epoch (Lightning's "Epoch 0/-2": a step-bounded run has ``max_epochs = -1``; one batch is ``ppo_epochs ×
    minibatches`` steps); no logger version number beside the metrics."""

    @property
    def total_train_batches(self) -> int | float:
        max_steps = self.trainer.max_steps
        return max_steps if max_steps > 0 else super().total_train_batches

    def _get_train_description(self, current_epoch: int) -> str:
        return "step"

    def _update(self, progress_bar_id, current: int, visible: bool = True, hard: bool = False) -> None:
        if progress_bar_id is not None and progress_bar_id == self.train_progress_bar_id:
            current = self.trainer.global_step
        super()._update(progress_bar_id, current, visible, hard)

    def get_metrics(self, trainer, pl_module) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics


class ToolReport(L.Callback):
    """Writes what the run did, in the run folder: ``curves.png`` (held-out SRCC / PLCC, the batch tool rate ρ with
    the BATE band, and the batch-mean reward parts, vs step; redrawn after every validation, the step-0 pass
    included, and continued across a resume) and, at the end, ``tools.md`` (paper Table 6 per subset, and how
    selective the calls were), and prints the table. ``apps/train.py`` adds it to every run."""

    def __init__(self, out_dir: str | None = None) -> None:
        """
        Args:
            out_dir: where the files go; None = the trainer's ``default_root_dir``.
        """
        self.out_dir = out_dir
        self.held_out: list[tuple[int, float, float]] = []
        """``(step, SRCC, PLCC)`` of every held-out pass; kept here (and in checkpoints) so a resumed run's curves
        start at step 0."""
        self._inherited = 0  # how many of them came from a checkpoint (a resumed run re-scores their last step)
        self._seen = 0  # how many of this process's ``pl_module.held_out`` results are in ``held_out``
        self.rho: list[tuple[int, float]] = []
        self.rewards: dict[str, list[tuple[int, float]]] = {part: [] for part in REWARD_PARTS}

    def state_dict(self) -> dict:
        return {"held_out": self.held_out, "rho": self.rho, "rewards": self.rewards}

    def load_state_dict(self, state_dict: dict) -> None:
        self.held_out = [tuple(point) for point in state_dict.get("held_out", [])]
        self._inherited = len(self.held_out)
        self.rho = [tuple(point) for point in state_dict.get("rho", [])]
        self.rewards = {part: [tuple(p) for p in points] for part, points in state_dict.get("rewards", {}).items()}

    def _folder(self, trainer: L.Trainer) -> Path:
        return Path(self.out_dir if self.out_dir is not None else trainer.default_root_dir)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        rho = trainer.callback_metrics.get("train/reward/rho")
        if rho is not None:
            self.rho.append((trainer.global_step, float(rho)))
        for part, points in self.rewards.items():
            value = trainer.callback_metrics.get(f"train/reward/mean_{part}")
            if value is not None:
                points.append((trainer.global_step, float(value)))

    @rank_zero_only
    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn != "fit":  # a `validate` run on a run folder must not redraw its training curves
            return
        # every pass since the last call: the module also scores outside Lightning's loop (after a warm start, a
        # second point at step 0); a resumed run's sanity pass replaces the checkpoint's point at its step
        results = getattr(pl_module, "held_out", [])
        fresh = [(r.step, r.srcc, r.plcc) for r in results[self._seen :]]
        self._seen = len(results)
        steps = {step for step, _, _ in fresh}
        inherited = [p for p in self.held_out[: self._inherited] if p[0] not in steps]
        self.held_out = inherited + self.held_out[self._inherited :] + fresh
        self._inherited = len(inherited)
        self._draw(trainer, pl_module)

    def _draw(self, trainer, pl_module) -> Path:
        bate = pl_module.reward_config.bate
        band, target = (bate.band_low, bate.band_high), bate.target_rate
        return draw_curves(self._folder(trainer) / "curves.png", self.held_out, self.rho, band, target, self.rewards)

    @rank_zero_only
    def on_fit_end(self, trainer, pl_module) -> None:
        rows = getattr(pl_module, "held_out_rows", [])
        if not rows:
            return
        folder = self._folder(trainer)
        selectivity = call_selectivity(rows)
        lines = [f"- {key}: {'—' if math.isnan(value) else f'{value:.0%}'}" for key, value in selectivity.items()]
        step = pl_module.held_out[-1].step if pl_module.held_out else trainer.global_step
        table = tool_breakdown(rows)
        text = f"# Held-out tool use at step {step}\n\n{table}\n" + "\n".join(lines) + "\n"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tools.md").write_text(text)
        curves = self._draw(trainer, pl_module)
        rank_zero_info(f"{text}\nwrote {folder / 'tools.md'} and {curves}")
