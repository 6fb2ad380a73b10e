"""Sources of variance of a set of runs (issue 11): variance components (`--decompose`),
the test-set floor and the per-seed mechanism, per condition, for `analyze` and `report`.

The conditions are the combinations of the compared factor (`--compare`), the second
factor (`--factor`) and the design columns that vary between the finished runs; a
decomposition leaves out the columns its spec names.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Optional, Sequence

import pandas as pd

from cffaudit.report.analysis import apply_where
from cffaudit.report.runs import DESIGN_COLUMNS, column_of
from cffaudit.report.source_columns import probe_list
from cffaudit.report.tables import markdown_table
from cffaudit.report.testset_floor import testset_floors
from cffaudit.stats import (MECHANISM_PREDICTORS, Decomposition, MechanismResult, SamplingFloor, decompose,
                            probe_rows, sampling_floors_markdown, seed_mechanism)
from cffaudit.stats.results import jsonable

#: The column `probe_rows` gives each probe of a run; a spec naming it expands `probe_test_accs`.
PROBE_COLUMN = "probe_seed"

#: The decomposition `report` makes by default when some run has several probes.
DEFAULT_REPORT_SPEC = f"seed/{PROBE_COLUMN}"

_NONE = "none"  # the level of a condition column a run has no value of (e.g. stability of subtract)


@dataclasses.dataclass(frozen=True)
class SourcesAnalysis:
    """Variance components, test-set floors and per-seed mechanism of one set of runs.

    `runs` holds the finished runs (one per run, with the `conditions` column `condition`)
    for the figures; `notes` say which parts were skipped and why.
    """

    conditions: tuple[str, ...]
    decompositions: tuple[Decomposition, ...]
    floors: tuple[SamplingFloor, ...]
    mechanism: Optional[MechanismResult]
    notes: tuple[str, ...]
    runs: pd.DataFrame = dataclasses.field(repr=False, compare=False, default_factory=pd.DataFrame)

    def to_dict(self) -> dict:
        """The `sources` member of `analyze --json`."""
        return {
            "conditions": list(self.conditions),
            "decompositions": [jsonable(d) for d in self.decompositions],
            "testset_floors": [jsonable(f) for f in self.floors],
            "mechanism": jsonable(self.mechanism),
            "notes": list(self.notes),
            "stage1_gains": (lambda g: [] if g is None else g.to_dict("records"))(stage1_gains(self.runs)),
        }

    def to_markdown(self, level: int = 2) -> str:
        """The "Sources of variance" section: stage-1 gain, components, test-set floor,
        mechanism, notes."""
        h, sub = "#" * level, "#" * (level + 1)
        by = ", ".join(self.conditions) or "all runs together"
        out = [f"{h} Sources of variance", "", f"Conditions: {by}.", ""]
        gains = stage1_gains(self.runs)
        if gains is not None:
            out += [f"{sub} What stage 1 learned", "",
                    "Test accuracy of each run's probe on its trained encoder against the same probe on the "
                    "encoder as initialised (`stage1_gain = test_acc - untrained_test_acc`, points):", "",
                    markdown_table(list(gains.columns),
                                   [[r[0], r[1], *(f"{v:.2f}" for v in r[2:])] for r in gains.itertuples(index=False)],
                                   numeric=[False] + [True] * (len(gains.columns) - 1)), ""]
            weakest = float(gains["gain min"].min())
            if weakest < WEAK_GAIN:
                out += [f"Warning: a run gained only {weakest:.2f} points over its untrained encoder; below "
                        f"{WEAK_GAIN:g} points the audit mostly measures an encoder that learned little.", ""]
        out += [f"{sub} Variance components", ""]
        if self.decompositions:
            for d in self.decompositions:
                out += [d.to_markdown(), ""]
        else:
            out += ["No decomposition asked for (`--decompose 'A/B'` or `--decompose 'A*B'`).", ""]
        out += [f"{sub} Test-set floor", ""]
        out += [sampling_floors_markdown(list(self.floors)), ""] if self.floors else ["Not computed (see the notes).", ""]
        out += [f"{sub} Per-seed mechanism", ""]
        out += [self.mechanism.to_markdown(), ""] if self.mechanism is not None else ["Not computed (see the notes).", ""]
        if self.notes:
            out += [f"{sub} Notes", ""] + [f"- {n}" for n in self.notes] + [""]
        return "\n".join(out)


def spec_columns(spec: str) -> list[str]:
    """The column names in a design spec ('A/B' or 'A*B'), stripped; validation is `decompose`'s."""
    return [p.strip() for p in re.split(r"[/*]", str(spec)) if p.strip()]


def wants_default_decomposition(runs: pd.DataFrame) -> bool:
    """Whether some finished run records more than one probe accuracy (report's default spec applies)."""
    if "probe_test_accs" not in runs.columns:
        return False
    return any(len(probe_list(v) or []) > 1 for v in runs["probe_test_accs"])


def _condition_columns(done: pd.DataFrame, compare: str, factor: Optional[str]) -> list[str]:
    """The columns whose combinations are the conditions (see the module docstring)."""
    cols = [c for c in DESIGN_COLUMNS if c in done.columns and done[c].astype(str).nunique() > 1]
    for c in (factor, compare):
        if c is not None and c in done.columns and c not in cols and done[c].astype(str).nunique() > 1:
            cols.append(c)
    return cols


def _decompose_one(done: pd.DataFrame, spec: str, by: list[str], compare: str, levels: Sequence[str],
                   seed: int) -> Decomposition:
    named = spec_columns(spec)
    data = done
    if PROBE_COLUMN in named and PROBE_COLUMN not in done.columns and "probe_test_accs" in done.columns:
        data = probe_rows(done, probe=PROBE_COLUMN)
    by_spec = [c for c in by if c not in named]
    # The levels come as text from the command line; the column may hold numbers.
    present = {str(v): v for v in data[compare].unique()} if compare in data.columns else {}
    use_compare = compare if compare in by_spec and all(lv in present for lv in levels) else None
    # The arms of a sources design vary different sources by design: an arm that cannot
    # identify the components (init*data in the arm varying init only) is listed as
    # skipped, with its reason, and the spec is refused when no arm identifies them. In
    # any other design every condition has the same structure, so a failure is an error.
    several = "arm" in by_spec and data.groupby(by_spec).ngroups > 1
    result = decompose(data, "test_acc", spec, by=by_spec, compare=use_compare,
                       compare_levels=[present[lv] for lv in levels] if use_compare else None, seed=seed,
                       skip_unidentified=several)
    if several and not result.conditions:
        reasons = "; ".join(f"{label}: {reason}" for label, reason in result.skipped)
        raise ValueError(f"spec: {spec!r} identifies its components in no condition ({reasons})")
    return result


#: Stage-1 gain (points) below which the output warns that an encoder learned little.
WEAK_GAIN = 10.0


def stage1_gains(runs: pd.DataFrame) -> Optional[pd.DataFrame]:
    """Per condition: n, mean untrained and trained test accuracy, and the min / median /
    max of the runs' stage-1 gain; None when no run recorded its untrained baseline."""
    if runs.empty or "stage1_gain" not in runs.columns:
        return None
    gain = pd.to_numeric(runs["stage1_gain"], errors="coerce")
    have = runs.assign(stage1_gain=gain)[gain.notna()]
    if have.empty:
        return None
    rows = []
    for condition, g in have.groupby("condition", sort=True):
        trained = pd.to_numeric(g["test_acc"], errors="coerce")
        # A tidy CSV may carry the gain without the baseline: the baseline is then test - gain.
        untrained = (pd.to_numeric(g["untrained_test_acc"], errors="coerce") if "untrained_test_acc" in g.columns
                     else trained - g["stage1_gain"])
        rows.append({"condition": condition or "all", "n": len(g),
                     "untrained": untrained.mean(), "trained": trained.mean(),
                     "gain min": g["stage1_gain"].min(), "gain median": g["stage1_gain"].median(),
                     "gain max": g["stage1_gain"].max()})
    return pd.DataFrame(rows)


def analyze_sources(
    frame: pd.DataFrame,
    *,
    decompose_specs: Sequence[str] = (),
    compare: str = "margin",
    levels: Sequence[str] = ("clamp", "subtract"),
    factor: Optional[str] = None,
    where: Optional[dict[str, list[str]]] = None,
    n_resamples: int = 10_000,
    seed: int = 0,
    default_probe_spec: bool = False,
) -> SourcesAnalysis:
    """Sources of variance of the finished runs of `frame` (after `where`), per condition.

    Args:
        frame: Runs as returned by `load_runs`.
        decompose_specs: Designs for `stats.decompose` ('A/B' nested, 'A*B' crossed) over
            columns of the run table; a spec naming `probe_seed` expands each run's
            `probe_test_accs` into one row per probe (`stats.probe_rows`). Each component
            is compared between the two `levels` of `compare` when both are present.
        compare, levels, factor: As for `analyze_runs`.
        where: Filters, as for `analyze_runs`.
        n_resamples: Bootstrap resamples of the test-set floor and the mechanism
            correlations (the decomposition keeps its own defaults: parametric bootstrap
            draws, 999 on balanced and 199 on unbalanced designs).
        seed: Analysis seed.
        default_probe_spec: Without `decompose_specs`, decompose 'seed/probe_seed' when
            some run has several probe accuracies (the report's default).

    Raises:
        ValueError: If a spec names a column that does not exist, a condition cannot
            identify a component, REML does not converge, runs of a condition were tested
            on different labels, or a predictions file is damaged.
    """
    compare = column_of(compare)
    factor = column_of(factor) if factor is not None else None
    selected = apply_where(frame, where or {})
    done = selected[selected["status"].astype(str) == "done"].reset_index(drop=True)
    if done.empty:
        raise ValueError("sources of variance: no finished runs to analyse")
    by = _condition_columns(done, compare, factor)
    done = done.assign(**{c: done[c].where(done[c].notna(), _NONE) for c in by})
    done["condition"] = done[by].astype(str).agg("/".join, axis=1) if by else ""
    notes: list[str] = []
    if not decompose_specs and default_probe_spec and wants_default_decomposition(done):
        # The encoder is the seed, or the run where the seed is held (the arms of a
        # sources design vary the streams under one run seed).
        varies = all(g["seed"].nunique() == len(g) for _, g in done.groupby("condition"))
        spec = DEFAULT_REPORT_SPEC if varies else f"run_id/{PROBE_COLUMN}"
        decompose_specs = [spec]
        notes.append(f"variance components: '{spec}' by default, as runs carry several probe accuracies")
    decompositions = [_decompose_one(done, spec, by, compare, levels, seed) for spec in decompose_specs]
    groups = [(str(k), g) for k, g in done.groupby("condition", sort=True)]
    floors, floor_notes = testset_floors(groups, n_resamples=n_resamples, seed=seed)
    notes += floor_notes
    predictors = [p for p in MECHANISM_PREDICTORS if p in done.columns and pd.to_numeric(done[p], errors="coerce").notna().any()]
    mechanism = None
    if predictors:
        mechanism = seed_mechanism(done, by=by, predictors=predictors, n_resamples=max(int(n_resamples), 2), seed=seed)
    else:
        notes.append(f"per-seed mechanism: skipped; no run carries {', '.join(MECHANISM_PREDICTORS)} (tidy CSVs "
                     f"without these columns, or results without a stage-1 history and an untrained baseline)")
    return SourcesAnalysis(conditions=tuple(by), decompositions=tuple(decompositions), floors=tuple(floors),
                           mechanism=mechanism, notes=tuple(notes), runs=done)


def sources_json(sources: Optional[SourcesAnalysis]) -> dict[str, Any]:
    """`{"sources": ...}` to merge into the analysis JSON (empty when not analysed)."""
    return {} if sources is None else {"sources": sources.to_dict()}
