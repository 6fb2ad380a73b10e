"""Where the runs of one output folder go (`cffaudit train --out DIR`).

One seed: the folder itself holds `result.json` and `checkpoint.pt`, as a sweep's run
folder does. Several seeds trained together: one sub-folder per seed
(`seed-<s>/result.json`) and one checkpoint for the ensemble beside them, named by its
seeds, so that training another set of seeds into the same folder never resumes from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cffaudit.config import CHECKPOINT_NAME, RESULT_NAME


@dataclass(frozen=True)
class RunFolders:
    """The result folders (one per seed) and the checkpoint of one training command."""

    out_dirs: tuple[Path, ...]
    checkpoint: Path

    @property
    def results(self) -> tuple[Path, ...]:
        """The `result.json` path of every seed, in seed order."""
        return tuple(d / RESULT_NAME for d in self.out_dirs)

    def existing(self) -> list[Path]:
        """The checkpoint and results already on disk (a fresh run would replace them)."""
        return [p for p in (self.checkpoint, *self.results) if p.exists()]


def run_folders(out: str | Path, seeds: Sequence[int]) -> RunFolders:
    """The layout of `seeds` trained together into `out` (see the module docstring).

    Raises:
        ValueError: If `seeds` is empty.
    """
    out = Path(out)
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds: give at least one seed")
    if len(seeds) == 1:
        return RunFolders((out,), out / CHECKPOINT_NAME)
    return RunFolders(tuple(out / f"seed-{s}" for s in seeds),
                      out / f"checkpoint-seeds-{'_'.join(map(str, seeds))}.pt")
