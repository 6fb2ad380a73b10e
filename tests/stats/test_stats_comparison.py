"""One comparison end to end, the family adjustment and the verdict in words."""

import json

import numpy as np
import pytest

from cffaudit.stats.comparison import adjust, compare, verdict, verdicts
from cffaudit.stats.equal_variance import DEFAULT_PRIMARY, bonett_test
from cffaudit.stats.multiplicity import benjamini_hochberg, holm

from tests.stats import paper_samples as ps

SEEDS = list(range(1, 8))


def _detach(**kw):
    return compare(ps.CLAMP_DETACH, ps.SUBTRACT_DETACH, label="clamp vs subtract | stability=detach",
                   labels=("clamp", "subtract"), seeds_a=SEEDS, seeds_b=SEEDS, n_resamples=999, **kw)


def _direct(**kw):
    return compare(ps.CLAMP_DIRECT, ps.SUBTRACT_DIRECT, label="clamp vs subtract | stability=direct",
                   labels=("clamp", "subtract"), seeds_a=SEEDS, seeds_b=SEEDS, n_resamples=999, **kw)


def test_compare_runs_the_default_primary_first_and_pairs_by_seed():
    r = _detach()
    assert r.primary.name == DEFAULT_PRIMARY == r.tests[0].name and r.primary.primary
    assert all(not t.primary for t in r.tests[1:]) and len(r.tests) == 6
    assert r.primary.pvalue == pytest.approx(bonett_test(ps.CLAMP_DETACH, ps.SUBTRACT_DETACH).pvalue)
    assert r.paired.n_pairs == 7 and r.paired.n_dropped == 0
    assert "default" in r.primary_reason and r.bootstrap.method == "percentile"
    assert any("little power below 10" in n for n in r.notes)
    assert r.power_at_min_ratio.label == "planning" and r.posthoc_power.label == "post-hoc (observed ratio)"
    assert r.seeds_needed[0] > 7
    text = json.dumps(r.to_dict())
    assert "NaN" not in text and "Infinity" not in text


def test_the_result_does_not_depend_on_other_comparisons():
    first = _detach()
    _direct()
    assert _detach() == first


def test_adjust_applies_holm_to_primaries_and_bh_to_every_printed_pvalue():
    reports = [_detach(), _direct()]
    h, bh = adjust(reports, scope="this test")
    ref = holm({r.label: r.primary.pvalue for r in reports})
    assert h.adjusted == ref.adjusted and "primary tests of this test (2 comparison(s))" == h.family
    every = {**reports[0].pvalues(), **reports[1].pvalues()}
    assert len(every) == 14  # 6 tests + Pitman-Morgan per comparison
    assert bh.adjusted == benjamini_hochberg(every).adjusted


def test_verdict_says_test_finding_adjustment_assumptions_and_seeds():
    reports = [_detach(), _direct()]
    texts = verdicts(reports, scope="this test")
    t = texts[0]
    assert t.startswith("clamp vs subtract | stability=detach: primary test bonett")
    assert "Holm-adjusted over the primary tests of this test" in t
    assert "Variance of clamp over subtract: " in t and "Bonett" in t
    assert "Assumptions:" in t and "Planning: at n = 7/7" in t and "seeds per group" in t
    assert "Pitman-Morgan" in t and "np." not in t
    alone = verdict(reports[0])
    assert "a single primary test, so no adjustment" in alone


def test_shapiro_rejection_is_attached_as_a_warning_to_normal_theory_results():
    rng = np.random.default_rng(0)
    skewed = np.exp(rng.normal(size=30) * 1.5)
    r = compare(skewed, rng.normal(size=30), label="skewed", n_resamples=200)
    assert any(w.startswith("Shapiro-Wilk rejects normality of A") for w in r.warnings)
    assert "assume normal data" in verdict(r)


def test_incomplete_pairs_are_counted_and_warned():
    r = compare(ps.CLAMP_DETACH, ps.SUBTRACT_DETACH, label="x", seeds_a=SEEDS, seeds_b=[1, 2, 3, 4, 5, 6, 99],
                n_resamples=200)
    assert r.paired.n_pairs == 6 and r.paired.n_dropped == 2
    assert any("pairs incomplete: 2 run(s)" in w for w in r.warnings)
    with pytest.raises(ValueError, match="^seeds_a, seeds_b:"):
        compare(ps.CLAMP_DETACH, ps.SUBTRACT_DETACH, label="x", seeds_a=[1], seeds_b=SEEDS)


def test_a_primary_that_cannot_run_gives_no_verdict_and_says_why():
    r = compare([78.1, 78.5, 77.9], [78.0, 79.2, 78.3], label="tiny", n_resamples=200)
    assert r.primary is None and "bonett" in r.skipped_tests
    assert "could not be computed" in verdict(r) and "needs at least 5" in verdict(r)
    with pytest.raises(ValueError, match="^primary: unknown test"):
        compare(ps.CLAMP_DETACH, ps.SUBTRACT_DETACH, label="x", primary="bartlett")
    assert compare(ps.CLAMP_DETACH, ps.SUBTRACT_DETACH, label="x", primary="F", n_resamples=200).primary_reason == \
        "chosen by the user"
