"""Run-table columns for the sources of variance (issue 11): the untrained baseline, the
probes of one encoder, the seed of each source of randomness and per-seed layer-0
diagnostics, from one `result.json`.

A result written before these were recorded gets NaN (None for the probe list), so old
results stay readable; its sources were all drawn from the run seed, which is what its
`seed_<source>` columns say.
"""

from __future__ import annotations

import json
import math
from typing import Any, Optional, Sequence

#: The sources of randomness a config can draw from its own seed (config `seeds.<source>`,
#: `cffaudit.train.seeds.SOURCES`), each a `seed_<source>` column.
SEED_SOURCES = ("init", "data", "augment", "split", "probe")

#: The per-seed mechanism columns (`stats.MECHANISM_PREDICTORS` besides stage1_gain).
MECHANISM_COLUMNS = ("car_l0_final", "car_l0_mean", "grad_norm_l0_final")


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def probe_list(value: Any) -> Optional[list[float]]:
    """A run's probe accuracies: its list, or the JSON list a tidy CSV holds; None otherwise."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
        return [float(v) for v in value]
    return None


def _layer0(history: Sequence[dict]) -> list[dict]:
    """Layer 0's record of every stage-1 epoch, in epoch order."""
    out = []
    for h in sorted((h for h in history or [] if h.get("stage") == 1), key=lambda h: h.get("epoch", -1)):
        for rec in h.get("layers") or []:
            if isinstance(rec, dict) and rec.get("layer") == 0:
                out.append(rec)
    return out


def source_columns(result: dict, test_acc: float) -> dict[str, Any]:
    """The sources-of-variance columns of one result (see the module docstring).

    Args:
        result: The parsed result.json.
        test_acc: Its test accuracy as the run table holds it (NaN when unfinished).

    Returns:
        `untrained_test_acc`, `stage1_gain` (test_acc - untrained_test_acc),
        `probe_test_accs` (a list, or None), `seed_<source>` for `SEED_SOURCES` (the seed
        the source was drawn from: config `seeds.<source>`, else the run seed), and
        `car_l0_final`, `car_l0_mean` (over stage-1 epochs), `grad_norm_l0_final`.
    """
    cfg = result.get("config") if isinstance(result.get("config"), dict) else {}
    untrained = _number(result.get("untrained_test_acc"))
    probes = result.get("probe_test_accs")
    row: dict[str, Any] = {
        "untrained_test_acc": untrained,
        "stage1_gain": test_acc - untrained,  # NaN without a baseline
        "probe_test_accs": probe_list(probes) if isinstance(probes, list) else None,
    }
    sources = cfg.get("seeds") if isinstance(cfg.get("seeds"), dict) else {}
    for source in SEED_SOURCES:
        chosen = sources.get(source)
        row[f"seed_{source}"] = chosen if chosen is not None else cfg.get("seed")
    layer0 = _layer0(result.get("history") or [])
    cars = [_number(r.get("car")) for r in layer0]
    cars = [c for c in cars if math.isfinite(c)]
    row["car_l0_final"] = _number(layer0[-1].get("car")) if layer0 else math.nan
    row["car_l0_mean"] = sum(cars) / len(cars) if cars else math.nan
    row["grad_norm_l0_final"] = _number(layer0[-1].get("grad_norm")) if layer0 else math.nan
    return row
