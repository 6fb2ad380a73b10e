"""Progress of a training command on the terminal: one bar per stage and seed group.

A stage-1 epoch costs tens to hundreds of probe epochs, so one bar over both stages
extrapolated the first stage-1 epoch to every probe epoch (2 h 23 min estimated for an
11-minute run). Each stage gets its own bar, whose time estimate comes from that stage's
epochs only (their mean, not a moving average: the epochs of a stage cost the same).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional, Sequence


class StageBar:
    """The bar of one stage; `epoch` advances it by one epoch with a status text."""

    def __init__(self, bar) -> None:
        self._bar = bar

    def epoch(self, text: str) -> None:
        """One epoch done; `text` (losses, accuracies) is shown after the bar."""
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)
            self._bar.update(1)


@contextlib.contextmanager
def stage_bar(show: bool, stage: str, total: int, done: int, seeds: Sequence[int]) -> Iterator[StageBar]:
    """A bar over the `total` epochs of `stage` for the seed group `seeds`, `done` of them
    already finished (a resumed run); nothing is drawn unless `show`."""
    if not show or total <= 0:
        yield StageBar(None)
        return
    from tqdm.auto import tqdm

    group = "seed" + ("s " if len(seeds) > 1 else " ") + ",".join(map(str, seeds))
    bar = tqdm(total=total, initial=done, desc=f"{stage} ({group})", unit="ep", dynamic_ncols=True,
               smoothing=0)
    try:
        yield StageBar(bar)
    finally:
        bar.close()


def layer_losses(records: Sequence[dict], car_layer: Optional[int] = 0) -> str:
    """A stage-1 epoch's per-layer losses, labelled: ``L0 4.01 L1 4.19 | CAR0 0.698``."""
    text = " ".join(f"L{r['layer']} {r['loss']:.2f}" for r in records)
    if car_layer is not None and records and records[car_layer].get("car") is not None:
        text += f" | CAR{car_layer} {records[car_layer]['car']:.3f}"
    return text
