"""One comparison of two groups of runs, everything the verdict needs, and the verdict in words.

`compare` runs the declared primary test and the secondary ones, Pitman-Morgan when the
runs pair by seed, the bootstrap interval (its own generator), the effect sizes, Shapiro-
Wilk per group and the planning numbers at a ratio of interest. `adjust` applies Holm to
the primary tests of all comparisons of one call and Benjamini-Hochberg to every p-value;
`verdict` says in words what the primary test found after adjustment, whether its
assumptions hold and how many seeds the question needs.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping, Optional, Sequence, TypeVar

from cffaudit.stats.bootstrap import DEFAULT_BOOTSTRAP, bootstrap_ratio_interval, comparison_seed
from cffaudit.stats.describe import describe
from cffaudit.stats.effects import EffectSizes, effect_sizes
from cffaudit.stats.equal_variance import (
    DEFAULT_PRIMARY,
    DEFAULT_PRIMARY_REASON,
    TEST_NAMES,
    equal_variance_tests,
    paired_variance_test,
)
from cffaudit.stats.multiplicity import AdjustedPValues, benjamini_hochberg, holm
from cffaudit.stats.normality import shapiro_wilk
from cffaudit.stats.planning import PlannedPower, posthoc_power, power_at_ratio, seeds_for_power
from cffaudit.stats.results import (
    BootstrapResult,
    GroupSummary,
    PairedVarianceTest,
    ShapiroResult,
    VarianceTest,
    _Result,
)

T = TypeVar("T")

#: Below this many runs Shapiro-Wilk rarely detects even marked non-normality.
SHAPIRO_LOW_POWER_N = 10


@dataclasses.dataclass(frozen=True)
class ComparisonReport(_Result):
    """Every statistic of one comparison of group A (numerator) with group B.

    `tests` holds the primary test first, then the secondary ones; `skipped_tests` maps
    a test that could not be computed to the reason. `power_at_min_ratio` and
    `seeds_needed` answer the planning question at `min_ratio`; `posthoc_power` is the
    power at the observed ratio, labelled so. `warnings` are attached to results that
    should not be trusted as printed; `notes` say what was not computed and why.
    """

    label: str
    a: GroupSummary
    b: GroupSummary
    primary_name: str
    primary_reason: str
    tests: tuple[VarianceTest, ...]
    skipped_tests: Mapping[str, str]
    paired: Optional[PairedVarianceTest]
    bootstrap: Optional[BootstrapResult]
    effects: Optional[EffectSizes]
    shapiro_a: Optional[ShapiroResult]
    shapiro_b: Optional[ShapiroResult]
    min_ratio: float
    target_power: float
    alpha: float
    power_at_min_ratio: Optional[PlannedPower]
    seeds_needed: Optional[tuple[int, int]]
    posthoc_power: Optional[PlannedPower]
    warnings: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def primary(self) -> Optional[VarianceTest]:
        """The primary test's result, or None when it could not be computed."""
        return next((t for t in self.tests if t.primary), None)

    def pvalues(self) -> dict[str, float]:
        """Every p-value this comparison prints, labelled '<comparison>: <test>'."""
        out = {f"{self.label}: {t.name}": t.pvalue for t in self.tests}
        if self.paired is not None:
            out[f"{self.label}: pitman-morgan"] = self.paired.pvalue
        return out


def _attempt(notes: list[str], what: str, fn: Callable[[], T]) -> Optional[T]:
    try:
        return fn()
    except ValueError as exc:
        notes.append(f"{what}: not computed ({exc})")
        return None


# Planning numbers depend on the design, never on the data: computed once per process.
@functools.lru_cache(maxsize=256)
def _power(ratio: float, n_a: int, n_b: int, test: str, alpha: float) -> PlannedPower:
    return power_at_ratio(ratio, n_a, n_b, test=test, alpha=alpha)


@functools.lru_cache(maxsize=256)
def _seeds(ratio: float, power: float, test: str, alpha: float) -> tuple[int, int]:
    return seeds_for_power(ratio, power=power, test=test, alpha=alpha)


def _shapiro_warnings(label: str, sh: Optional[ShapiroResult], alpha: float) -> list[str]:
    if sh is None or sh.pvalue >= alpha:
        return []
    return [f"Shapiro-Wilk rejects normality of {label} (p = {sh.pvalue:.3g}): the F-test, the F and chi-square "
            f"intervals, Hedges' g and Pitman-Morgan assume normal data and may be wrong here"]


def compare(
    a: Sequence[float],
    b: Sequence[float],
    *,
    label: str,
    labels: tuple[str, str] = ("A", "B"),
    seeds_a: Optional[Sequence[Any]] = None,
    seeds_b: Optional[Sequence[Any]] = None,
    primary: Optional[str] = None,
    seed: int = 0,
    min_ratio: float = 2.0,
    power: float = 0.8,
    alpha: float = 0.05,
    confidence_level: float = 0.95,
    n_resamples: int = 9999,
    bootstrap_method: str = DEFAULT_BOOTSTRAP,
) -> ComparisonReport:
    """Every statistic of one comparison of A with B (the variance ratio is A over B).

    Args:
        a: Per-run values of group A.
        b: Per-run values of group B.
        label: The comparison's name; it also seeds its bootstrap and permutation draws.
        labels: Names of the two groups, for the summaries and messages.
        seeds_a: Seed key of each run of A (the run seed, or a tuple of every stream
            seed); with `seeds_b`, runs sharing a key are paired for Pitman-Morgan.
        seeds_b: Seed keys of B's runs.
        primary: The primary test (one of `TEST_NAMES`); default `DEFAULT_PRIMARY`.
        seed: Analysis seed (see `bootstrap.comparison_seed`).
        min_ratio: Variance ratio of interest for the planning numbers.
        power: Target power for `seeds_needed`.
        alpha: Level of every test and of the Shapiro warnings.
        confidence_level: Coverage of every interval.
        n_resamples: Bootstrap resamples.
        bootstrap_method: One of `bootstrap.BOOTSTRAP_METHODS`.

    Raises:
        ValueError: If a group has fewer than 2 values or holds NaN, `primary` is
            unknown, or seed keys do not match their values in number.
    """
    name = DEFAULT_PRIMARY if primary is None else primary
    if name not in TEST_NAMES:
        raise ValueError(f"primary: unknown test {name!r}; choose one of {list(TEST_NAMES)}")
    reason = DEFAULT_PRIMARY_REASON if primary is None else "chosen by the user"
    sa, sb = describe(a, labels[0]), describe(b, labels[1])
    notes: list[str] = []
    warnings: list[str] = []

    rng_seed = comparison_seed(seed, f"permutation {label}")
    tests, skipped = equal_variance_tests(a, b, primary=name, rng=rng_seed, confidence_level=confidence_level)
    for test, why in skipped.items():
        notes.append(f"{test}: not computed ({why})")
    paired = None
    if seeds_a is not None and seeds_b is not None:
        if len(seeds_a) != len(a) or len(seeds_b) != len(b):
            raise ValueError("seeds_a, seeds_b: need one seed key per run of each group")
        paired = _attempt(notes, "Pitman-Morgan", lambda: paired_variance_test(dict(zip(seeds_a, a)),
                                                                               dict(zip(seeds_b, b))))
        if paired is None and not any(n.startswith("Pitman-Morgan") for n in notes):
            notes.append("Pitman-Morgan: not computed (fewer than 3 seeds shared by both groups: not a paired design)")
        elif paired is not None and paired.n_dropped:
            warnings.append(f"pairs incomplete: {paired.n_dropped} run(s) had no partner with the same seed "
                            f"and were left out of Pitman-Morgan ({paired.n_pairs} pairs used)")
    boot = _attempt(notes, "bootstrap", lambda: bootstrap_ratio_interval(
        a, b, seed=seed, label=label, method=bootstrap_method, n_resamples=n_resamples,
        confidence_level=confidence_level))
    if boot is not None:
        warnings.extend(f"bootstrap: {w}" for w in boot.warnings)
    effects = _attempt(notes, "effect sizes", lambda: effect_sizes(a, b, confidence_level=confidence_level))
    sh_a = _attempt(notes, f"Shapiro-Wilk {labels[0]}", lambda: shapiro_wilk(a))
    sh_b = _attempt(notes, f"Shapiro-Wilk {labels[1]}", lambda: shapiro_wilk(b))
    warnings += _shapiro_warnings(labels[0], sh_a, alpha) + _shapiro_warnings(labels[1], sh_b, alpha)
    if min(sa.n, sb.n) < SHAPIRO_LOW_POWER_N:
        notes.append(f"Shapiro-Wilk has little power below {SHAPIRO_LOW_POWER_N} runs per group: "
                     "not rejecting normality here is weak evidence that the data are normal")
    planned = _attempt(notes, "power at the ratio of interest", lambda: _power(float(min_ratio), sa.n, sb.n, name, alpha))
    needed = _attempt(notes, "seeds for power", lambda: _seeds(float(min_ratio), float(power), name, alpha))
    post = None
    if effects is not None and effects.variance_ratio.estimate not in (0.0, 1.0):
        post = _attempt(notes, "post-hoc power", lambda: posthoc_power(effects.variance_ratio.estimate, sa.n, sb.n,
                                                                         test="F", alpha=alpha))
    return ComparisonReport(
        label=label, a=sa, b=sb, primary_name=name, primary_reason=reason, tests=tests,
        skipped_tests=dict(skipped), paired=paired, bootstrap=boot, effects=effects, shapiro_a=sh_a, shapiro_b=sh_b,
        min_ratio=float(min_ratio), target_power=float(power), alpha=float(alpha), power_at_min_ratio=planned,
        seeds_needed=needed, posthoc_power=post, warnings=tuple(warnings), notes=tuple(notes),
    )


def adjust(reports: Sequence[ComparisonReport], *, scope: str = "this analysis") -> tuple[AdjustedPValues, AdjustedPValues]:
    """Holm over the primary tests of `reports`, Benjamini-Hochberg over every p-value they print.

    Args:
        reports: All comparisons of one `analyze`/`report` call.
        scope: Words naming the call, used in the family names.

    Returns:
        (holm, bh): labelled adjusted p-values; Holm's labels are the comparison labels.
    """
    primaries = {r.label: r.primary.pvalue for r in reports if r.primary is not None}
    every: dict[str, float] = {}
    for r in reports:
        every.update(r.pvalues())
    fam_h = f"primary tests of {scope} ({len(primaries)} comparison(s))"
    fam_bh = f"every p-value printed by {scope} ({len(every)} test(s))"
    return holm(primaries, family=fam_h), benjamini_hochberg(every, family=fam_bh)


def _num(v: float) -> str:
    return f"{v:.3g}"


def verdict(report: ComparisonReport, holm_adjusted: Optional[AdjustedPValues] = None) -> str:
    """The comparison's finding in words, after adjustment (`adjust`'s Holm result).

    Without `holm_adjusted` the comparison is taken as the only primary test (no
    adjustment is needed for a family of one, and the text says so).
    """
    r = report
    p = r.primary
    parts = [f"{r.label}:"]
    if p is None:
        why = r.skipped_tests.get(r.primary_name, "not computed")
        parts.append(f"the primary test ({r.primary_name}) could not be computed ({why}); no verdict on the variances.")
    else:
        if holm_adjusted is not None and r.label in holm_adjusted.labels:
            p_adj = holm_adjusted[r.label]
            adj = f"Holm-adjusted over the {holm_adjusted.family}: p = {_num(p_adj)}"
        else:
            p_adj, adj = p.pvalue, "a single primary test, so no adjustment"
        found = ("the variances differ" if p_adj < r.alpha else "no evidence at this level that the variances differ")
        parts.append(f"primary test {p.name} ({r.primary_reason}) gives p = {_num(p.pvalue)} ({adj}): "
                     f"{found} (alpha {r.alpha}).")
    if r.effects is not None:
        vr = r.effects.variance_ratio
        ci = vr.confidence_interval
        # Group labels hold '/' themselves (clamp/detach), so the ratio is spelled out.
        text = (f"Variance of {r.a.label} over {r.b.label}: {_num(vr.estimate)} "
                f"({int(round(vr.confidence_level * 100))}% CI {_num(ci.low)} to {_num(ci.high)}, F")
        if r.effects.variance_ratio_robust is not None:
            rc = r.effects.variance_ratio_robust.confidence_interval
            text += f"; Bonett {_num(rc.low)} to {_num(rc.high)}"
        parts.append(text + ").")
    normal_warn = [w for w in r.warnings if w.startswith("Shapiro-Wilk rejects")]
    if normal_warn:
        parts.append("Assumptions: " + " ".join(normal_warn) + ".")
    elif r.shapiro_a is not None and r.shapiro_b is not None:
        low = min(r.a.n, r.b.n) < SHAPIRO_LOW_POWER_N
        parts.append(f"Assumptions: Shapiro-Wilk does not reject normality (p = {_num(r.shapiro_a.pvalue)}, "
                     f"{_num(r.shapiro_b.pvalue)})" + (f", but it has little power below {SHAPIRO_LOW_POWER_N} runs." if low else "."))
    if r.paired is not None:
        parts.append(f"Paired by seed ({r.paired.n_pairs} pairs, correlation {_num(r.paired.correlation)}): "
                     f"Pitman-Morgan p = {_num(r.paired.pvalue)} (unadjusted, secondary).")
    if r.power_at_min_ratio is not None:
        pw = r.power_at_min_ratio
        text = (f"Planning: at n = {pw.n_a}/{pw.n_b} the primary test has power {_num(pw.power)} to detect a "
                f"variance ratio of {_num(r.min_ratio)}")
        if r.seeds_needed is not None:
            text += f"; {int(round(r.target_power * 100))}% power needs {r.seeds_needed[0]} seeds per group"
        parts.append(text + ".")
    other = [w for w in r.warnings if not w.startswith("Shapiro-Wilk rejects")]
    if other:
        parts.append("Warnings: " + "; ".join(other) + ".")
    return " ".join(parts)


def verdicts(reports: Sequence[ComparisonReport], *, scope: str = "this analysis") -> list[str]:
    """`verdict` of every comparison, Holm-adjusted over their primary tests."""
    holm_res, _ = adjust(reports, scope=scope)
    return [verdict(r, holm_res) for r in reports]
