"""The design-level audit: cells, comparisons and errors on a DataFrame of runs."""

import json

import numpy as np
import pytest

from cffaudit.stats import levene_test, variance_audit, variance_ratio_test, welch_test

from tests.stats import paper_samples as ps


def _frame():
    return ps.factorial_frame()


def test_pooled_audit_equals_the_individual_tests():
    res = variance_audit(_frame(), factor="stability", pool=True, n_resamples=500)
    assert len(res.cells) == 4 and len(res.comparisons) == 1
    c = res.comparisons[0]
    ref = variance_ratio_test(ps.CLAMP_POOLED, ps.SUBTRACT_POOLED)
    assert c.variance_ratio.statistic == pytest.approx(ref.statistic)
    assert c.variance_ratio.pvalue == pytest.approx(ref.pvalue)
    assert c.welch.pvalue == pytest.approx(welch_test(ps.CLAMP_POOLED, ps.SUBTRACT_POOLED).pvalue)
    assert c.levene.pvalue == pytest.approx(levene_test(ps.CLAMP_POOLED, ps.SUBTRACT_POOLED).pvalue)
    assert res.levene_cells.df == (3, 24)
    assert {t.term for t in res.factorial_levene.terms} == {"margin", "stability", "margin:stability"}
    assert c.bootstrap.n_resamples == 500 and res.bootstrap_seed == 0
    assert c.power_at_n.n_a == 14 and c.seeds_for_power >= 2
    assert res.notes == ()


def test_unpooled_audit_compares_within_each_level_of_the_factor():
    res = variance_audit(_frame(), factor="stability", n_resamples=200)
    labels = [c.label for c in res.comparisons]
    assert labels == ["clamp vs subtract | stability=detach", "clamp vs subtract | stability=direct"]
    assert res.comparisons[1].variance_ratio.statistic == pytest.approx(
        np.var(ps.CLAMP_DIRECT, ddof=1) / np.var(ps.SUBTRACT_DIRECT, ddof=1)
    )


def test_audit_bootstrap_is_seeded():
    a = variance_audit(_frame(), n_resamples=300, seed=5).comparisons[0].bootstrap
    b = variance_audit(_frame(), n_resamples=300, seed=5).comparisons[0].bootstrap
    c = variance_audit(_frame(), n_resamples=300, seed=6).comparisons[0].bootstrap
    assert a == b and a.confidence_interval != c.confidence_interval


def test_degenerate_group_becomes_a_note_not_a_number():
    frame = _frame()
    frame.loc[frame.margin == "subtract", "test_acc"] = 78.0
    res = variance_audit(frame, n_resamples=100)
    c = res.comparisons[0]
    assert c.variance_ratio is None and c.bootstrap is None and c.shapiro_b is None
    assert c.welch is not None  # one constant group still has a mean difference
    assert any("variance ratio: not computed" in n for n in res.notes)
    text = json.dumps(res.to_dict())  # None, never NaN, in JSON
    assert "NaN" not in text and "Infinity" not in text


@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"compare": "margin_type"}, "compare"),
        ({"factor": "stabilty"}, "factor"),
        ({"factor": "margin"}, "factor"),
        ({"levels": ("clamp", "none")}, "levels"),
        ({"levels": ("clamp",)}, "levels"),
        ({"levels": ("clamp", "clamp")}, "levels"),
        ({"response": "acc"}, "response"),
    ],
)
def test_audit_rejects_unknown_factors_and_levels(kwargs, param):
    with pytest.raises(ValueError, match=f"^{param}:"):
        variance_audit(_frame(), **kwargs)


def test_audit_rejects_nan_response_and_missing_factor_values():
    frame = _frame()
    frame.loc[0, "test_acc"] = np.nan
    with pytest.raises(ValueError, match="^response:"):
        variance_audit(frame)
    frame = _frame()
    frame.loc[frame.stability == "direct", "stability"] = None
    with pytest.raises(ValueError, match="^factor:"):
        variance_audit(frame, factor="stability")


def test_audit_bootstrap_of_a_comparison_does_not_depend_on_the_others():
    from cffaudit.stats.bootstrap import comparison_seed

    frame = _frame()
    both = variance_audit(frame, factor="stability", n_resamples=300, seed=4)
    alone = variance_audit(frame[frame.stability == "direct"], factor="stability", n_resamples=300, seed=4)
    direct = both.comparisons[1]
    assert alone.comparisons[0].label == direct.label
    assert alone.comparisons[0].bootstrap == direct.bootstrap
    assert direct.bootstrap.seed == comparison_seed(4, direct.label)  # recorded, never null


def test_audit_keeps_a_cell_with_one_run_with_its_n_and_reason():
    frame = _frame()
    frame = frame[~((frame.margin == "subtract") & (frame.stability == "direct") & (frame.seed > 1))]
    res = variance_audit(frame, factor="stability", n_resamples=100)
    (cell,) = res.skipped_cells
    assert cell.label == "subtract/direct" and cell.n == 1 and "needs at least 2" in cell.reason
    assert "np." not in " ".join(res.notes)


def test_comparison_reports_follow_the_audit_labels_and_pair_by_seed():
    from cffaudit.stats import comparison_reports, compare

    frame = _frame()
    reports = comparison_reports(frame, factor="stability", n_resamples=300)
    audit = variance_audit(frame, factor="stability", n_resamples=300)
    assert [r.label for r in reports] == [c.label for c in audit.comparisons]
    assert all(r.paired is not None and r.paired.n_pairs == 7 for r in reports)
    ref = compare(ps.CLAMP_DETACH, ps.SUBTRACT_DETACH, label=reports[0].label, seeds_a=list(range(1, 8)),
                  seeds_b=list(range(1, 8)), n_resamples=300)
    assert reports[0].primary == ref.primary and reports[0].paired.pvalue == pytest.approx(ref.paired.pvalue)
    unpaired = comparison_reports(frame.drop(columns="seed"), factor="stability", pool=True, n_resamples=300)
    assert len(unpaired) == 1 and unpaired[0].paired is None
