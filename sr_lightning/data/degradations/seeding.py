"""Per-sample seeds: a run repeats exactly, and a resumed run draws what it would have drawn.

A random degradation gets one integer seed per sample, mixed by ``numpy.random.SeedSequence``
from the run's seed and the sample's position (e.g. its batch counter, rank and place in the
batch, or an evaluation image's name). Each sample's draws come from its own CPU
``torch.Generator``, so they do not depend on the device or on the other samples of the batch.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["generator", "name_key", "sample_seeds"]

_SEED_BITS = 63


def sample_seeds(seed: int, *position: int, count: int) -> list[int]:
    """``count`` well-mixed seeds for the samples ``0 .. count-1`` at ``position``.

    ``sample_seeds(seed, step, rank, count=16)[i]`` is sample ``i`` of that batch; the same
    arguments always give the same seeds.
    """
    return [mix(seed, *position, i) for i in range(count)]


def mix(*keys: int) -> int:
    """One seed below 2**63 from any non-negative integers (``SeedSequence`` mixing)."""
    words = [int(k) & (2**64 - 1) for k in keys]
    state = np.random.SeedSequence(words).generate_state(1, np.uint64)
    return int(state[0]) >> (64 - _SEED_BITS)


def name_key(name: str) -> int:
    """A stable integer for an image's name (CRC-32), so its key does not depend on order."""
    return zlib.crc32(name.encode("utf-8"))


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded by ``seed``: draws are the same on every device and run."""
    return torch.Generator().manual_seed(int(seed))


def generators(seeds: Sequence[int]) -> list[torch.Generator]:
    return [generator(s) for s in seeds]
