"""Nested config dicts addressed by dotted paths ("stage1.epochs"): flatten, drop, set.

Plain dict helpers, shared by the config codec, run identity, checkpoints and the report;
``cffaudit.config`` re-exports them.
"""

from __future__ import annotations

from typing import Any, Sequence

from cffaudit.suggest import did_you_mean


def flatten_paths(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested dict as {dotted.path: leaf value} (empty sub-dicts leave no key)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = prefix + str(k)
        if isinstance(v, dict):
            out.update(flatten_paths(v, key + "."))
        else:
            out[key] = v
    return out


def without_paths(d: dict[str, Any], paths: Sequence[str]) -> dict[str, Any]:
    """A copy of a nested dict without the given dotted paths (absent ones are skipped)."""
    return {k: without_paths(v, [p.split(".", 1)[1] for p in paths if p.startswith(k + ".")])
            if isinstance(v, dict) else v
            for k, v in d.items() if k not in paths}


def set_path(d: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path in a nested dict, refusing paths that do not exist."""
    keys = path.split(".")
    node = d
    for i, k in enumerate(keys[:-1]):
        if not isinstance(node, dict) or k not in node:
            raise ValueError(f"unknown config key {'.'.join(keys[: i + 1])!r} (in {path!r})"
                             f"{did_you_mean(path, _dotted_keys(d))}")
        node = node[k]
    if not isinstance(node, dict) or keys[-1] not in node:
        raise ValueError(f"unknown config key {path!r}{did_you_mean(path, _dotted_keys(d))}")
    node[keys[-1]] = value


def _dotted_keys(d: dict[str, Any], prefix: str = "") -> list[str]:
    """Every dotted path of a nested dict, sections included (what a misspelt key may have meant)."""
    out = []
    for k, v in d.items():
        out.append(prefix + str(k))
        if isinstance(v, dict):
            out += _dotted_keys(v, prefix + str(k) + ".")
    return out
