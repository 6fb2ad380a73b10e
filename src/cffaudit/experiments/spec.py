"""Experiment specs: a base config, factors with levels, and seeds, expanded into runs.

A spec file (YAML)::

    name: cifar10_factorial
    description: free text
    base:                     # nested RunConfig keys (dotted keys also accepted)
      data: {dataset: cifar10}
    factors:                  # full factorial over these; short aliases or dotted paths
      margin: [clamp, subtract]
      stability: [detach, direct]
    exclude:                  # optional: drop cells matching all the given levels
      - {margin: subtract, stability: direct}
    arms:                     # optional: the union of several factorials (crossed with
      - {seed_init: [1, 2, 3]}   # `factors`); a factor an arm does not vary keeps
      - {seed_init: [1, 2], seed_data: [1, 2]}   # its base value
    seeds: 1-7                # a list, an integer, or ranges "1-5,10"
    reuse: [runs/cifar10_factorial]   # optional: stores whose finished runs are copied

Expansion builds every RunConfig before anything runs, so an unknown key, factor or
level is a :class:`SpecError` naming the spec file and the cell.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from cffaudit.config import (  # noqa: F401  (parse_seeds: re-exported)
    NON_RESULT_KEYS,
    RunConfig,
    flatten_paths,
    parse_seeds,
    set_path,
)
from cffaudit.experiments.identity import (
    GRADIENT_NEUTRAL_MARGINS,
    canonical_config,
    condition_key,
    run_id,
    stable_hash,
)
from cffaudit.suggest import did_you_mean

#: Short factor names a spec may use instead of dotted config paths. Results and the
#: analysis name factors by these aliases whichever spelling the spec used.
FACTOR_ALIASES = {
    "margin": "loss.margin",
    "stability": "loss.stability",
    "margin_schedule": "loss.margin_schedule",
    "m0": "loss.m0",
    "mL": "loss.mL",
    "temperature": "loss.temperature",
    "dataset": "data.dataset",
    "augment": "data.augment",
    "limit_train": "data.limit_train",
    "embed_dim": "model.embed_dim",
    "depth": "model.depth",
    "locality": "stage1.locality",
    "probe_seeds": "stage2.probe_seeds",
    # one source of randomness drawn from its own seed (config.SeedsConfig)
    **{f"seed_{source}": f"seeds.{source}" for source in ("init", "split", "data", "augment", "probe")},
}
_PATH_TO_ALIAS = {v: k for k, v in FACTOR_ALIASES.items()}

SPEC_KEYS = ("name", "description", "base", "factors", "arms", "exclude", "seeds", "reuse")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class SpecError(ValueError):
    """A spec that cannot be run; the message says where and what to change."""


@dataclass(frozen=True)
class Condition:
    """One cell of the design: a level for every factor."""

    levels: dict[str, Any]

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.levels.items()) or "(base)"


@dataclass(frozen=True)
class PlannedRun:
    """A run to execute: its id, seed, canonical config and the cells it belongs to."""

    run_id: str
    seed: int
    config: RunConfig
    conditions: tuple[dict[str, Any], ...]

    @property
    def label(self) -> str:
        return _levels_label(merged_levels(self.conditions)) + f" seed={self.seed}"


@dataclass(frozen=True)
class Expansion:
    """A spec expanded into runs, with the bookkeeping the CLI reports."""

    spec: "ExperimentSpec"
    conditions: tuple[Condition, ...]
    runs: tuple[PlannedRun, ...]
    design_hash: str
    n_cells_runs: int  # conditions x seeds, before equivalent runs are merged

    @property
    def shared_runs(self) -> list[PlannedRun]:
        """Runs that stand for more than one cell (gradient-neutral canonicalisation)."""
        return [r for r in self.runs if len(r.conditions) > 1]

    def summary(self) -> list[str]:
        """Human-readable lines describing the expansion."""
        spec = self.spec
        lines = [
            f"{spec.name}: {len(self.conditions)} condition(s) x {len(spec.seeds)} seed(s) "
            f"= {self.n_cells_runs} cells -> {len(self.runs)} distinct run(s)"
        ]
        shared = self.shared_runs
        if shared:
            saved = sum(len(r.conditions) - 1 for r in shared)
            lines.append(
                f"{len(shared)} run(s) shared across conditions, {saved} training run(s) saved "
                f"({'/'.join(GRADIENT_NEUTRAL_MARGINS)} is gradient-neutral: the margin schedule "
                "cannot change the trained model)"
            )
        canon = [r for r in self.runs if _schedule_was_canonicalised(spec, r)]
        if canon and not shared:
            lines.append(
                f"{len(canon)} run(s) use a gradient-neutral margin, so their margin schedule is "
                "ignored; they share ids with the standard-schedule runs of other experiments"
                + (f" and are copied from {', '.join(spec.reuse)} when finished there" if spec.reuse else "")
            )
        return lines


@dataclass(frozen=True)
class ExperimentSpec:
    """A parsed, validated experiment spec (see the module docstring for the format)."""

    name: str
    base: dict[str, Any]
    factors: dict[str, tuple[Any, ...]]  # display name -> levels, in spec order
    factor_paths: dict[str, str]  # display name -> dotted config path
    seeds: tuple[int, ...]
    # Factorials whose union is the design (crossed with `factors`): per arm, display name
    # -> levels. `factors` then lists every factor with all its levels.
    arms: tuple[dict[str, tuple[Any, ...]], ...] = ()
    exclude: tuple[dict[str, Any], ...] = ()
    reuse: tuple[str, ...] = ()
    description: str = ""
    source: str = "<spec>"
    text: str = field(default="", repr=False, compare=False)

    # -- construction -----------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> "ExperimentSpec":
        """Read and validate a YAML spec file."""
        import yaml

        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise SpecError(f"spec file {path} not found") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SpecError(f"{path}: not valid YAML: {exc}") from None
        return cls.from_dict(data, source=str(path), text=text)

    @classmethod
    def from_dict(cls, d: Any, *, source: str = "<spec>", text: str = "") -> "ExperimentSpec":
        """Validate a spec mapping; every error names `source`."""

        def fail(msg: str) -> SpecError:
            return SpecError(f"{source}: {msg}")

        if not isinstance(d, dict):
            raise fail("a spec must be a mapping with keys name, base, factors, seeds")
        unknown = sorted(set(d) - set(SPEC_KEYS))
        if unknown:
            raise fail(f"unknown top-level key(s) {unknown}{did_you_mean(str(unknown[0]), SPEC_KEYS)} "
                       f"(allowed: {list(SPEC_KEYS)})")
        name = d.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise fail(f"name: give a short identifier (letters, digits, _ . -), got {name!r}")

        base = d.get("base") or {}
        if not isinstance(base, dict):
            raise fail(f"base: expected a mapping of config keys, got {base!r}")
        base_flat = flatten_paths(base)
        if "seed" in base_flat:
            raise fail("base: do not set 'seed' here; list the seeds under 'seeds'")

        factors_in = d.get("factors") or {}
        if not isinstance(factors_in, dict):
            raise fail(f"factors: expected a mapping factor -> list of levels, got {factors_in!r}")
        paths: dict[str, str] = {}
        factors = _parse_factors(factors_in, "factors", paths, fail)
        arms_in = d.get("arms") or []
        if not isinstance(arms_in, list) or not all(isinstance(a, dict) and a for a in arms_in):
            raise fail("arms: expected a list of mappings factor -> list of levels, e.g. "
                       "[{seed_init: [1, 2, 3]}, {seed_data: [1, 2, 3]}]")
        arms = []
        for i, arm_in in enumerate(arms_in):
            arm = _parse_factors(arm_in, f"arms[{i}]", paths, fail)
            for factor in arm:
                if factor in factors:
                    raise fail(f"arms[{i}]: {factor!r} is also under factors; vary it in one place")
            arms.append(arm)
        for arm in arms:  # factors lists every factor with all its levels
            for factor, levels in arm.items():
                known = factors.get(factor, ())
                factors[factor] = known + tuple(v for v in levels if v not in known)

        exclude = d.get("exclude") or []
        if not isinstance(exclude, list) or not all(isinstance(e, dict) and e for e in exclude):
            raise fail("exclude: expected a list of mappings factor -> level")
        exclude_norm = []
        for e in exclude:
            cell = {}
            for k, v in e.items():
                path = _factor_path(str(k), fail)
                display = _PATH_TO_ALIAS.get(path, path)
                if display not in factors:
                    raise fail(f"exclude: {k!r} is not one of the factors {list(factors)}")
                if v not in factors[display]:
                    raise fail(f"exclude: {v!r} is not a level of {display} {list(factors[display])}")
                cell[display] = v
            exclude_norm.append(cell)

        if "seeds" not in d:
            raise fail("seeds: missing; give a list, an integer, or a range like 1-7")
        try:
            seeds = parse_seeds(d["seeds"])
        except ValueError as exc:
            raise fail(f"seeds: {exc}") from None

        reuse = d.get("reuse") or []
        if isinstance(reuse, str):
            reuse = [reuse]
        if not isinstance(reuse, list) or not all(isinstance(r, str) for r in reuse):
            raise fail("reuse: expected a list of store directories")

        description = d.get("description") or ""
        if not isinstance(description, str):
            raise fail("description: expected text")

        spec = cls(
            name=name,
            base=base_flat,
            factors=factors,
            factor_paths=paths,
            seeds=seeds,
            arms=tuple(arms),
            exclude=tuple(exclude_norm),
            reuse=tuple(reuse),
            description=description,
            source=source,
            text=text,
        )
        return spec

    # -- expansion ----------------------------------------------------------------
    def with_seeds(self, seeds: Iterable[int]) -> "ExperimentSpec":
        """The same design with another seed list."""
        from dataclasses import replace

        return replace(self, seeds=tuple(seeds))

    def conditions(self) -> list[Condition]:
        """The factorial cells in spec order (of each arm in turn, without repeats),
        minus the excluded ones."""
        names = list(self.factors)
        if self.arms:
            base = self._base_levels()
            common = {n: v for n, v in self.factors.items() if not any(n in arm for arm in self.arms)}
            grids = [{**common, **arm} for arm in self.arms]
        else:
            base, grids = {}, [self.factors]
        cells: list[Condition] = []
        for grid in grids:
            varied = list(grid)
            for combo in itertools.product(*(grid[n] for n in varied)):
                chosen = dict(zip(varied, combo))
                levels = {n: chosen[n] if n in chosen else base[n] for n in names}
                if any(all(levels[k] == v for k, v in e.items()) for e in self.exclude):
                    continue
                if Condition(levels) not in cells:
                    cells.append(Condition(levels))
        return cells

    def arm_names(self) -> list[str]:
        """Each arm's name: the factors it varies joined by '*' (`seed_init*seed_data`)."""
        return ["*".join(arm) for arm in self.arms]

    def arms_of(self, levels: dict[str, Any]) -> list[str]:
        """The names of the arms whose factorial holds the cell `levels` (every factor an
        arm varies at one of its levels, every other arm-varied factor at its base
        level); empty for a spec without arms. A cell held at the base of every factor is
        in each arm that lists the base levels."""
        if not self.arms:
            return []
        base = self._base_levels()
        varied = {n for arm in self.arms for n in arm}
        return [name for name, arm in zip(self.arm_names(), self.arms)
                if all(levels.get(n) in arm[n] for n in arm)
                and all(levels.get(n) == base[n] for n in varied - set(arm))]

    def _base_levels(self) -> dict[str, Any]:
        """Each factor's value in the base config: its level in an arm that does not vary it."""
        flat = flatten_paths(self.base_config().to_dict())
        return {n: flat[self.factor_paths[n]] for n in self.factors}

    def base_config(self, overrides: Optional[dict[str, Any]] = None) -> RunConfig:
        """The base RunConfig with command-line `overrides` (e.g. device) applied."""
        try:
            cfg = RunConfig().override(self.base)
        except ValueError as exc:
            raise SpecError(f"{self.source}: base: {exc}") from None
        if overrides:
            cfg = cfg.override(overrides)
        return cfg

    def expand(self, overrides: Optional[dict[str, Any]] = None) -> Expansion:
        """Build every run's config (validating all of them) and merge equivalent runs.

        `overrides` may only touch settings outside the run identity (device, data
        location): anything else would make the store disagree with its spec.
        """
        overrides = dict(overrides or {})
        bad = sorted(k for k in overrides if k not in NON_RESULT_KEYS)
        if bad:
            raise SpecError(f"only {list(NON_RESULT_KEYS)} can be overridden outside the spec, not {bad}")
        base = self.base_config(overrides)
        conditions = self.conditions()
        if not conditions:
            raise SpecError(f"{self.source}: exclude removes every condition; nothing to run")
        by_id: dict[str, PlannedRun] = {}
        design = []
        for cond in conditions:
            updates = {self.factor_paths[n]: v for n, v in cond.levels.items()}
            try:
                cell_cfg = base.override(updates)
            except ValueError as exc:
                raise SpecError(f"{self.source}: condition {cond.label}: {exc}") from None
            design.append({"levels": cond.levels, "condition": condition_key(cell_cfg)})
            for seed in self.seeds:
                try:
                    cfg = canonical_config(cell_cfg.override({"seed": seed}))
                except ValueError as exc:
                    raise SpecError(f"{self.source}: condition {cond.label} seed {seed}: {exc}") from None
                rid = run_id(cfg)
                if rid in by_id:
                    prev = by_id[rid]
                    by_id[rid] = PlannedRun(rid, seed, prev.config, prev.conditions + (dict(cond.levels),))
                else:
                    by_id[rid] = PlannedRun(rid, seed, cfg, (dict(cond.levels),))
        design_hash = stable_hash({"factors": list(self.factors), "design": design})[:16]
        return Expansion(
            spec=self,
            conditions=tuple(conditions),
            runs=tuple(by_id.values()),
            design_hash=design_hash,
            n_cells_runs=len(conditions) * len(self.seeds),
        )


# -- helpers ------------------------------------------------------------------------


def _parse_factors(given: Any, where: str, paths: dict[str, str], fail) -> dict[str, tuple[Any, ...]]:
    """{display name: levels} of a mapping factor -> levels; records each name's config
    path in `paths`."""
    if not isinstance(given, dict):
        raise fail(f"{where}: expected a mapping factor -> list of levels, got {given!r}")
    factors: dict[str, tuple[Any, ...]] = {}
    for raw_name, levels in given.items():
        path = _factor_path(str(raw_name), fail)
        display = _PATH_TO_ALIAS.get(path, path)
        if display in factors:
            raise fail(f"{where}: {raw_name!r} and another entry both set {path}")
        if not isinstance(levels, list) or not levels:
            raise fail(f"{where}.{raw_name}: expected a non-empty list of levels, got {levels!r}")
        if len({repr(v) for v in levels}) != len(levels):
            raise fail(f"{where}.{raw_name}: repeated level in {levels}")
        factors[display] = tuple(levels)
        paths[display] = path
    return factors


def merged_levels(conditions: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Levels of a run that stands for several cells.

    A factor on which the cells agree keeps its level; one on which they differ (the
    margin schedule of a subtract run) becomes the levels joined by '|', e.g.
    ``"standard|low"``, so a shared run stays one row with a readable, hashable label.
    """
    conditions = list(conditions)
    if not conditions:
        return {}
    out: dict[str, Any] = {}
    for k in conditions[0]:
        values: list[Any] = []
        for c in conditions:
            if c.get(k) not in values:
                values.append(c.get(k))
        out[k] = values[0] if len(values) == 1 else "|".join(str(v) for v in values)
    return out


def _levels_label(levels: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in levels.items())


def _factor_path(name: str, fail) -> str:
    path = FACTOR_ALIASES.get(name, name)
    if path == "seed":
        raise fail("factors: seeds are not a factor; list them under 'seeds'")
    if path in NON_RESULT_KEYS:
        raise fail(f"factors: {name!r} does not change results, so it cannot be a factor")
    if not _is_config_path(path):
        options = [*FACTOR_ALIASES, *flatten_paths(RunConfig().to_dict())]
        raise fail(
            f"factors: unknown factor {name!r}{did_you_mean(name, options)} (use a short name "
            f"{sorted(FACTOR_ALIASES)} or a dotted config path such as loss.temperature)"
        )
    return path


def _is_config_path(path: str) -> bool:
    """Whether `path` names a key of a RunConfig, by the codec's own check (`set_path`
    refuses exactly the unknown keys); the levels are checked when the spec is expanded."""
    try:
        set_path(RunConfig().to_dict(), path, None)
    except ValueError:
        return False
    return True


def _schedule_was_canonicalised(spec: ExperimentSpec, run: PlannedRun) -> bool:
    if run.config.loss.margin not in GRADIENT_NEUTRAL_MARGINS:
        return False
    try:
        asked = spec.base_config().override(
            {spec.factor_paths[n]: v for n, v in run.conditions[0].items()}
        )
    except ValueError:
        return False
    return asked.margins() != run.config.margins()
