"""The paper's tables recomputed from its per-seed data, checked value by value."""

import json

import pytest

from cffaudit import paperdata
from cffaudit.report.paper import matches_reported, reproduce_paper
from cffaudit.report.tables import reproduction_markdown

from tests.stats import paper_samples as ps


@pytest.fixture(scope="module")
def rep():
    return reproduce_paper(n_resamples=2000, seed=0)


def test_packaged_data_matches_the_paper_appendix():
    # Seed paper Appendix A, Tables 16-17, typed independently in tests/stats/paper_samples.py.
    acc = paperdata.per_seed_accuracy()
    c10 = acc[acc.dataset == "cifar10"]
    got = c10[(c10.experiment == "factorial") & (c10.margin == "clamp") & (c10.stability == "direct")].sort_values("seed")
    assert got.test_acc.tolist() == ps.CLAMP_DIRECT
    got = c10[(c10.experiment == "dose_response") & (c10.margin == "clamp") & (c10.stability == "direct")].sort_values("seed")
    assert got.test_acc.tolist() == ps.LOW_CLAMP_DIRECT
    assert len(acc) == 109 and len(paperdata.clamp_activation_rate()) == 28


# Every printed number that the per-seed data reproduces by the described method.
REPRODUCED = [
    ("3", r, c) for r in ("clamp/detach", "clamp/direct", "subtract/detach", "subtract/direct") for c in ("mean", "std", "var")
] + [
    (t, r, c) for t in ("5", "10", "13", "14") for r in ("clamp", "subtract") for c in ("n", "mean", "std", "var")
] + [
    ("6", r, c) for r in ("standard", "low") for c in ("clamp_var", "subtract_var", "f_pvalue")
] + [
    ("7", f"layer {k}", "reduction_pct") for k in (2, 3, 5)
] + [
    ("9", d, "acc") for d in ("cifar10", "cifar100", "svhn", "fashion_mnist")
] + [("9", d, "l0_car") for d in ("cifar10", "cifar100", "svhn")] + [
    ("11", "mean", "cifar10"), ("11", "mean", "cifar100"), ("18", "mean", "cifar10"),
] + [
    ("15", r, c) for r in ("easy", "hard") for c in ("n", "acc", "clamp_var", "subtract_var")
] + [("15", "medium", "n"), ("15", "medium", "acc")] + [
    ("23", r, c) for r in ("clamp (standard)", "subtract (standard)", "clamp (low)", "subtract (low)") for c in ("n", "W", "p")
]


@pytest.mark.parametrize("key", REPRODUCED, ids=["/".join(k) for k in REPRODUCED])
def test_reported_value_is_reproduced(rep, key):
    v = rep.get(*key)
    assert v.status == "reproduces"
    decimals = len(v.reported.split(".")[1]) if "." in v.reported else 0
    assert round(v.reproduced, decimals) == pytest.approx(float(v.reported), abs=1e-12)


def test_some_values_typed_from_the_paper():
    # Independent of reported_values.csv: Table 5 (1.008, 0.1724), Table 6 (p 0.003),
    # Table 15 (hard clamp var 85.45), Table 23 (subtract low W 0.9074).
    rep = reproduce_paper(n_resamples=10)
    assert round(rep.get("5", "clamp", "std").reproduced, 3) == 1.008
    assert round(rep.get("5", "subtract", "var").reproduced, 4) == 0.1724
    assert round(rep.get("6", "standard", "f_pvalue").reproduced, 3) == 0.003
    assert round(rep.get("15", "hard", "clamp_var").reproduced, 2) == 85.45
    assert round(rep.get("23", "subtract (low)", "W").reproduced, 4) == 0.9074


def test_table4_uses_one_way_and_k_group_tests_not_the_described_two_way_anova(rep):
    expected = {
        "margin": "on two groups pooled over the other factor",
        "stability": "on two groups pooled over the other factor",
        "interaction": "over the 4 cells (k-group test)",
    }
    for row in ("Levene", "Brown-Forsythe"):
        for col, method in expected.items():
            v = rep.get("4", row, col)
            assert v.status == "alternative reproduces"
            assert not matches_reported(v.reported, v.reproduced)  # the described two-way ANOVA does not
            matching = [a.method for a in v.alternatives if a.matches]
            assert len(matching) == 1 and method in matching[0], (row, col, matching)
    # The described method's values, for the record (two-way ANOVA type II on |y - cell centre|).
    assert rep.get("4", "Levene", "margin").reproduced == pytest.approx(0.0182, abs=1e-4)
    assert rep.get("4", "Brown-Forsythe", "interaction").reproduced == pytest.approx(0.3000, abs=1e-4)


def test_values_that_do_not_reproduce_are_flagged(rep):
    for col in ("clamp_var", "subtract_var"):
        v = rep.get("15", "medium", col)
        assert v.status == "differs" and not any(a.matches for a in v.alternatives)
    assert rep.get("15", "medium", "clamp_var").reproduced == pytest.approx(36.2643, abs=1e-4)
    assert rep.get("18", "mean", "svhn").status == "not in data"
    for k in (0, 1, 4, 6, 7):  # computed from unrounded CAR: within the range rounding allows
        v = rep.get("7", f"layer {k}", "reduction_pct")
        assert v.status == "alternative reproduces"
        low, high = v.alternatives[0].value
        assert low <= float(v.reported) <= high


def test_claims_in_the_text_hold_and_illegible_values_are_computed(rep):
    claims = [v for v in rep.values if v.reported and v.reported[0] in "<>"]
    assert len(claims) == 8 and all(v.status == "claim holds" for v in claims)
    welch = rep.get("text 5.2.1", "Welch standard", "p")
    assert welch.reproduced == pytest.approx(0.9230, abs=1e-4)
    boot = rep.get("text 5.2.1", "bootstrap standard", "ci_low")
    assert boot.status == "not legible" and 1.0 < boot.reproduced < 5.899963
    statuses = {v.status for v in rep.values}
    assert statuses <= {"reproduces", "alternative reproduces", "differs", "claim holds", "not legible", "not in data"}


def test_every_reported_value_has_a_row_and_json_is_strict(rep):
    assert len(rep.values) == len(paperdata.reported_values())
    json.dumps(rep.to_dict(), allow_nan=False)
    md = reproduction_markdown(rep)
    assert "Table 4" in md and "alternative reproduces" in md and "Finding:" in md


@pytest.mark.parametrize("reported, value, ok", [("0.061", 0.06101, True), ("0.061", 0.0616, False),
                                                 ("14", 14.0, True), ("33.7", (33.5, 33.8), True),
                                                 ("0.2", (0.0, 0.15), False), ("0.5", float("nan"), False)])
def test_matches_reported(reported, value, ok):
    assert matches_reported(reported, value) is ok
