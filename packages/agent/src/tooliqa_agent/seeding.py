"""Per-trajectory sampling seeds: a pure function of (run seed, image key, sample, turn).

An image's samples must not depend on what else was in its batch, on the order images arrive in, on a resume or on
the rank that scores it. A counter of generate calls gives none of that (a resumed evaluation restarts the counter,
so the same image draws other samples); a seed hashed from the image's identity gives all of it. The multi-rank
validation and the evaluation runner use :func:`sample_seed`; training rollouts keep the engine's per-call counter
(checkpointed by the trainer), which is deterministic for a given config and seed.
"""

from __future__ import annotations

import hashlib

__all__ = ["rank_seed", "sample_seed"]


def sample_seed(seed: int, key: str, sample: int, turn: int = 0) -> int:
    """A 63-bit seed for turn ``turn`` of sample ``sample`` of the image identified by ``key``.

    Args:
        seed: the run's base seed (``SamplingConfig.seed``).
        key: the image's identity, stable across runs (the evaluation uses ``"<dataset>/<image name under its root>"``, so a copied dataset samples alike).
        sample: index of the trajectory among the image's samples, from 0.
        turn: index of the assistant turn within the trajectory, from 0 (each turn draws its own stream).
    """
    # blake2b, not hash(): Python's str hash is salted per process, so ranks and resumes would disagree
    text = f"{int(seed)}\x00{key}\x00{int(sample)}\x00{int(turn)}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def rank_seed(seed: int, rank: int) -> int:
    """``seed`` on rank 0; on another rank a seed hashed from (seed, rank), so ranks draw different samples.

    Hashed, not offset by ``rank << 32``: a CPU ``torch.Generator`` keeps only a seed's low 32 bits, so such an
    offset would leave every rank on the same stream."""
    return seed if rank == 0 else sample_seed(seed, f"rank {rank}", 0)
