"""One run seed -> independent seeds for every source of randomness.

Each stream gets its own seed from `numpy.random.SeedSequence(run_seed)` spawned by
name, so adding a stream never shifts another, and seed k means the same draws solo,
in an ensemble, resumed, or on another executor. Nothing draws from (or seeds) the
global torch, numpy or `random` state: seeding it from one seed of an ensemble would
give the others a meaning that depends on their company.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

STREAMS = ("init", "split", "data", "augment", "val", "probe", "probe_augment", "probe_order")


def derive_seeds(run_seed: int) -> dict[str, int]:
    """Seeds of every random stream of a run, recorded in result.json."""
    out = {}
    for name in STREAMS:
        ss = np.random.SeedSequence(run_seed, spawn_key=(zlib.crc32(name.encode()),))
        out[name] = int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
    return out


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on `device` seeded with `seed` (one per stream and seed)."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g

