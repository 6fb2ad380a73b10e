"""Holm and Benjamini-Hochberg adjustment, checked against hand-computed values."""

import pytest

from cffaudit.stats.multiplicity import adjust_pvalues, benjamini_hochberg, holm

P = {"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.20}


def test_holm_matches_the_step_down_by_hand():
    # Sorted 0.01, 0.03, 0.04, 0.20 times 4, 3, 2, 1 -> 0.04, 0.09, 0.08 -> monotone 0.09, 0.20.
    res = holm(P, family="primary tests of 4 designs")
    assert res["a"] == pytest.approx(0.04) and res["c"] == pytest.approx(0.09)
    assert res["b"] == pytest.approx(0.09) and res["d"] == pytest.approx(0.20)
    assert res.family == "primary tests of 4 designs" and res.pvalues == (0.01, 0.04, 0.03, 0.20)


def test_benjamini_hochberg_matches_the_step_up_by_hand():
    # p_(i) * m / i: 0.04, 0.06, 0.0533, 0.20 -> step-up minimum: 0.04, 0.0533, 0.0533, 0.20.
    res = benjamini_hochberg(list(P.items()))
    assert res.adjusted == pytest.approx((0.04, 0.16 / 3, 0.16 / 3, 0.20))
    assert res.method == "bh" and "false discovery" in res.description


def test_adjustment_refuses_bad_input_naming_it():
    with pytest.raises(ValueError, match="^method:"):
        adjust_pvalues(P, method="sidak", family="x")
    with pytest.raises(ValueError, match="^family:"):
        adjust_pvalues(P, family=" ")
    with pytest.raises(ValueError, match=r"^pvalues: repeated label\(s\) \['a'\]"):
        holm([("a", 0.1), ("a", 0.2)])
    with pytest.raises(ValueError, match="^pvalues: 'x' has p = nan"):
        holm({"x": float("nan")})
    with pytest.raises(ValueError, match="^pvalues: 'x' has p = 1.5"):
        holm({"x": 1.5})
    with pytest.raises(KeyError):
        holm(P)["z"]
    assert len(holm({})) == 0
