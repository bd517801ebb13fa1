"""Small trainer callbacks that are not part of the algorithm."""

from __future__ import annotations

import lightning as L
import torch

__all__ = ["TorchThreads"]


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
