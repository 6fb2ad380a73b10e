"""Run identity: a short stable id from the fully resolved config and seed.

Two configs that must train the same model get the same id, so a sweep never trains
a run twice and results can be shared between experiments:

* settings that do not change the result are left out of the id: where the data
  lives (``data.data_dir``, ``data.download``), which device runs it (``device``)
  and how CPU memory is allocated (``perf.cpu_allocator``). A run id names the
  experiment, not the hardware: with ``perf.precision: auto`` a GPU trains in bf16
  and draws its augmentations from CUDA random streams, a CPU in float32 from CPU
  streams. Each result records its runtime, and ``cffaudit analyze`` notes a design
  whose runs mix devices or precisions (``--where device=cuda`` keeps one);
* derived values are compared, not their spellings: ``data.augment: auto`` is the
  dataset's preset, and a margin schedule (its name, end points, shape and k) is its
  list of per-block margins;
* gradient-neutral margins are canonicalised: ``subtract`` only adds a constant per
  anchor to the loss (the paper's Proposition 4.1, which holds under every link) and
  ``none`` has no margin, so neither can depend on the margin schedule. Their schedule
  (end points, shape and k included) is reset to the default,
  which is why the dose-response experiment's subtract arm has the same ids as the
  standard-schedule factorial's (the paper reused those runs in the same way). Which
  variants are gradient-neutral is their class attribute in ``cffaudit.loss.variants``;
* the synthetic dataset's sizes only matter for the synthetic dataset, and the WEINCE
  hyperparameters (``loss.weince.*``) only for ``loss.link: weince``; among them, an
  auxiliary term's M (and beta) only when its weight is not 0.

Values equal to the defaults of ``RunConfig`` are left out of the hashed identity,
so a later version that adds a configuration field with a neutral default keeps the
ids (and stores) made before it. Changing a default is different: a run that leaves
the field at its default would keep its id but train otherwise, and a sweep would reuse
a result trained under the old default. Every such change raises ``PROTOCOL_VERSION``,
which is part of every identity, so all runs trained before it get new ids.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from typing import Any

from cffaudit.config import NON_RESULT_KEYS, PROTOCOL_VERSION, RunConfig, flatten_paths
from cffaudit.loss.variants import gradient_neutral_margins

#: Margins whose gradient does not depend on the margin values (from the variants' classes).
GRADIENT_NEUTRAL_MARGINS = gradient_neutral_margins()



# The schedule spellings are replaced by the resolved `loss.margins` list.
_SPELLING_KEYS = ("loss.margin_schedule", "loss.m0", "loss.mL", "loss.margin_shape", "loss.margin_k")

_SYNTHETIC_KEYS = ("synthetic_train", "synthetic_test", "synthetic_classes")

ID_LENGTH = 12


def canonical_config(cfg: RunConfig) -> RunConfig:
    """The config a run is actually trained with: equivalent configs map to one.

    Keeps the settings that do not affect results (device, data location) as given.
    """
    updates: dict[str, Any] = {}
    default = _default_config()
    if cfg.loss.margin in GRADIENT_NEUTRAL_MARGINS:
        updates.update({"loss.margin_schedule": "standard", "loss.m0": None, "loss.mL": None,
                        "loss.margin_shape": default.loss.margin_shape, "loss.margin_k": default.loss.margin_k})
    updates.update(_unused_link_settings(cfg, default))
    if cfg.data.augment == "auto":
        updates["data.augment"] = cfg.augment_preset()
    if cfg.data.dataset != "synthetic":
        updates.update({f"data.{k}": getattr(default.data, k) for k in _SYNTHETIC_KEYS})
    return cfg.override(updates) if updates else cfg


def _unused_link_settings(cfg: RunConfig, default: RunConfig) -> dict[str, Any]:
    """Updates that reset the WEINCE hyperparameters a run does not use to their defaults."""
    ours, theirs = cfg.loss.weince, default.loss.weince
    if cfg.loss.link != "weince":
        unused = [f.name for f in dataclasses.fields(ours)]
    else:
        unused = (["weib_top_m", "weib_beta"] if ours.weib_weight == 0 else []) + (
            ["pl_top_m"] if ours.pl_weight == 0 else [])
    return {f"loss.weince.{name}": getattr(theirs, name) for name in unused
            if getattr(ours, name) != getattr(theirs, name)}


def identity_dict(cfg: RunConfig, protocol: int = PROTOCOL_VERSION) -> dict[str, Any]:
    """The flat {dotted.path: value} mapping that defines a run's identity.

    It holds ``protocol`` and every resolved value that differs from the default
    config's. ``protocol`` is ``PROTOCOL_VERSION`` for a run trained now; a result
    trained under protocol 1 (which recorded none) gets its id back with
    ``protocol=1``, whose identity had no protocol key.
    """
    flat = flatten_paths(canonical_config(cfg).resolved())
    for key in NON_RESULT_KEYS + _SPELLING_KEYS:
        flat.pop(key, None)
    default = _default_identity()
    ident = {k: _normalise(v) for k, v in sorted(flat.items()) if _normalise(v) != default.get(k, _MISSING)}
    if protocol == 1:
        return ident
    # Not a config path ("protocol" has no dot), so it cannot collide with one.
    return {"protocol": protocol, **ident}


@functools.cache
def _default_config() -> RunConfig:
    return RunConfig()


@functools.cache
def _default_identity() -> dict[str, Any]:
    """The default config's flat, normalised values (the same for every run id)."""
    return {k: _normalise(v) for k, v in flatten_paths(canonical_config(RunConfig()).resolved()).items()}


def run_id(cfg: RunConfig, protocol: int = PROTOCOL_VERSION) -> str:
    """Short stable hex id of a run (config and seed); see the module docstring.

    ``protocol``: the training protocol the run was trained under (a result records
    it as ``protocol``; results without it were trained under protocol 1).
    """
    return _hash(identity_dict(cfg, protocol))[:ID_LENGTH]


def result_protocol(result: dict[str, Any]) -> int:
    """The training protocol a result.json was trained under (1 when it records none)."""
    return int(result.get("protocol") or 1)


def condition_key(cfg: RunConfig) -> str:
    """Id of a run's condition: its identity without the seed."""
    ident = identity_dict(cfg)
    ident.pop("seed", None)
    return _hash(ident)[:ID_LENGTH]


def stable_hash(obj: Any) -> str:
    """sha256 hex digest of a JSON-able object, independent of dict order."""
    return _hash(obj)


# -- helpers ------------------------------------------------------------------------

_MISSING = object()


def _hash(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _normalise(v: Any) -> Any:
    # Margins come out of a linear interpolation; rounding keeps ids independent of
    # the last bits of float arithmetic (0.30000000000000004 vs 0.3).
    if isinstance(v, float):
        return round(v, 10)
    if isinstance(v, (list, tuple)):
        return [_normalise(x) for x in v]
    return v
