"""One run seed -> independent seeds for every source of randomness.

Each stream gets its own seed from `numpy.random.SeedSequence(seed)` spawned by name,
so adding a stream never shifts another, and seed k means the same draws solo, in an
ensemble, resumed, or on another executor. Nothing draws from (or seeds) the global
torch, numpy or `random` state: seeding it from one seed of an ensemble would give the
others a meaning that depends on their company.

A *source* (config ``seeds.<source>``) may be drawn from another seed than the run's:
its streams then get the seeds the run with that seed would give them, so a design can
vary the initialisation alone with the data order, augmentation and split held.
"""

from __future__ import annotations

import zlib
from typing import Mapping, Optional

import numpy as np
import torch

STREAMS = ("init", "split", "data", "augment", "val", "probe", "probe_augment", "probe_order",
           # the probe trained on the encoder as initialised (stage2.untrained_baseline)
           "untrained_probe", "untrained_probe_augment", "untrained_probe_order")

#: The streams of one probe: its weights, its training views and its order.
PROBE_STREAMS = ("probe", "probe_augment", "probe_order")

#: Source (a field of config.SeedsConfig) -> the streams it sets. The stage-1 validation
#: views ("val") only measure, and follow the run seed.
SOURCES: dict[str, tuple[str, ...]] = {
    "init": ("init",),
    "split": ("split",),
    "data": ("data",),
    "augment": ("augment",),
    "probe": PROBE_STREAMS + ("untrained_probe", "untrained_probe_augment", "untrained_probe_order"),
}
_SOURCE_OF = {stream: source for source, streams in SOURCES.items() for stream in streams}


def stream_seed(seed: int, name: str) -> int:
    """The seed of stream `name` of seed `seed` (63 bits)."""
    ss = np.random.SeedSequence(seed, spawn_key=(zlib.crc32(name.encode()),))
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def derive_seeds(run_seed: int, sources: Optional[Mapping[str, Optional[int]]] = None,
                 probes: int = 1) -> dict[str, int]:
    """Seeds of every random stream of a run, recorded in result.json.

    Args:
        run_seed: the run seed.
        sources: per source, the seed it is drawn from (None: the run seed).
        probes: probes per encoder (stage2.probe_seeds); probe j >= 1 gets its own
            streams "probe:j", "probe_augment:j", "probe_order:j"; probe 0 has the
            unsuffixed ones, so its draws do not depend on how many probes there are.
    """
    sources = sources or {}
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown:
        raise ValueError(f"sources: unknown source(s) {unknown}; known: {sorted(SOURCES)}")

    def seed_of(stream: str) -> int:
        base = stream.split(":")[0]
        chosen = sources.get(_SOURCE_OF.get(base, ""))
        return stream_seed(run_seed if chosen is None else chosen, stream)

    names = STREAMS + tuple(f"{s}:{j}" for j in range(1, probes) for s in PROBE_STREAMS)
    return {name: seed_of(name) for name in names}


def probe_streams(seeds: Mapping[str, int], j: int) -> dict[str, int]:
    """{"probe", "probe_augment", "probe_order"} -> seed, of probe `j` of a run with
    stream seeds `seeds` (from `derive_seeds`)."""
    return {s: seeds[s if j == 0 else f"{s}:{j}"] for s in PROBE_STREAMS}


def untrained_probe_streams(seeds: Mapping[str, int]) -> dict[str, int]:
    """The probe streams of the probe on the encoder as initialised."""
    return {s: seeds[f"untrained_{s}"] for s in PROBE_STREAMS}


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on `device` seeded with `seed` (one per stream and seed)."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g
