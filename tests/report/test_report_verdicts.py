"""The verdict layer of `analyze`/`report`: primary and secondary tests, pairing by seed,
the multiplicity families, planning numbers and verdicts, checked against scipy and
statsmodels computed here independently."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st
from statsmodels.stats.multitest import multipletests

from cffaudit.cli import main
from cffaudit.report.analysis import analyze_runs
from cffaudit.report.audit_tables import analysis_markdown
from cffaudit.report.runs import paper_runs
from cffaudit.stats import DEFAULT_PRIMARY, TEST_NAMES


@pytest.fixture(scope="module")
def paper():
    """Every design of the paper's per-seed data, pooled over stability (as `cffaudit paper`)."""
    return analyze_runs(paper_runs(), factor="stability", pool=True, n_resamples=500)


def _cifar10(frame=None):
    frame = paper_runs() if frame is None else frame
    return frame[(frame.dataset == "cifar10") & (frame.experiment == "factorial")]


def test_every_comparison_has_one_primary_test_and_the_rest_secondary(paper):
    assert paper.options["primary"] == DEFAULT_PRIMARY and "simulation study" in paper.options["primary_reason"]
    for d in paper.designs:
        for r in d.reports:
            roles = [t.role for t in r.tests]
            assert roles[0] == "primary" and set(roles[1:]) <= {"secondary"}
            assert r.tests[0].name == DEFAULT_PRIMARY or r.primary is None
            assert {t.name for t in r.tests} | set(r.skipped_tests) == set(TEST_NAMES)
    text = analysis_markdown(paper)
    assert f"Primary test: {DEFAULT_PRIMARY} (default: no test kept its size" in text
    assert "| bonett " in text and "| primary " in text and "| secondary " in text


def test_primary_can_be_chosen_and_is_the_one_adjusted():
    a = analyze_runs(_cifar10(), factor="stability", pool=True, n_resamples=200, primary="F")
    r = a.designs[0].reports[0]
    assert r.tests[0].name == "F" and r.tests[0].primary
    # The pooled CIFAR-10 F-test: Table 5 of the paper (VR 5.90, two-sided p 0.003).
    f = st.f.cdf(5.89996, 13, 13)
    assert r.tests[0].pvalue == pytest.approx(2 * min(f, 1 - f), rel=1e-4)
    assert a.holm.labels == (r.label,) and a.holm.pvalues == (r.tests[0].pvalue,)
    assert a.options["primary_reason"] == "chosen by the user (--primary)"


def test_holm_over_primaries_and_bh_over_every_printed_pvalue_match_statsmodels(paper):
    primaries = [(r.label, r.primary.pvalue) for d in paper.designs for r in d.reports if r.primary is not None]
    assert len(primaries) == 7 and list(paper.holm.labels) == [k for k, _ in primaries]
    want = multipletests([p for _, p in primaries], method="holm")[1]
    assert np.allclose(paper.holm.adjusted, want)
    # BH: every variance test, Pitman-Morgan, Welch, factorial and k-cell test printed.
    every = {}
    for d in paper.designs:
        for r in d.reports:
            every.update({f"{r.label}: {t.name}": t.pvalue for t in r.tests})
            if r.paired is not None:
                every[f"{r.label}: pitman-morgan"] = r.paired.pvalue
        for c in d.audit.comparisons:
            every[f"{d.key}: {c.label}: welch"] = c.welch.pvalue
        for res, name in ((d.audit.factorial_levene, "levene anova"), (d.audit.factorial_brown_forsythe, "brown-forsythe anova")):
            for t in res.terms if res is not None else ():
                every[f"{d.key}: {name} {t.term}"] = t.pvalue
        for res, name in ((d.audit.levene_cells, "levene over cells"), (d.audit.brown_forsythe_cells, "brown-forsythe over cells")):
            if res is not None:
                every[f"{d.key}: {name}"] = res.pvalue
    assert set(paper.bh.labels) == set(every)
    want = dict(zip(every, multipletests(list(every.values()), method="fdr_bh")[1]))
    assert all(paper.bh[k] == pytest.approx(want[k], rel=1e-12) for k in every)
    assert "primary tests of this analysis (7 comparison(s) in 7 design(s))" == paper.holm.family
    assert f"({len(every)} p-values" in paper.bh.family and "Shapiro-Wilk" in paper.bh.family
    text = analysis_markdown(paper)
    assert "Holm (family-wise error): primary tests of this analysis" in text
    assert "Benjamini-Hochberg (false discovery rate): every test p-value printed" in text


def test_runs_pair_by_seed_within_each_pooled_stability():
    a = analyze_runs(_cifar10(), factor="stability", pool=True, n_resamples=200)
    r = a.designs[0].reports[0]
    assert r.paired.n_pairs == 14 and r.paired.n_dropped == 0
    # Independent: Pitman-Morgan is the correlation test of A + B with A - B on the pairs.
    runs = _cifar10().sort_values(["stability", "seed"])
    x = runs[runs.margin == "clamp"].test_acc.to_numpy()
    y = runs[runs.margin == "subtract"].test_acc.to_numpy()
    assert r.paired.pvalue == pytest.approx(st.pearsonr(x + y, x - y).pvalue, rel=1e-9)
    assert r.paired.correlation == pytest.approx(st.pearsonr(x, y).statistic, rel=1e-9)


def test_incomplete_pairs_are_counted_and_warned():
    runs = _cifar10()
    drop = runs[(runs.margin == "subtract") & (runs.stability == "detach") & (runs.seed == 7)].index
    a = analyze_runs(runs.drop(index=drop), factor="stability", pool=True, n_resamples=200)
    r = a.designs[0].reports[0]
    assert (r.paired.n_pairs, r.paired.n_dropped) == (13, 1)
    assert "pairs incomplete: 1 run(s) had no partner with the same seed" in analysis_markdown(a)


def test_stream_seed_columns_pair_runs_when_the_run_seed_is_shared():
    # A design that varies the streams apart under one run seed: seed_* columns identify runs.
    runs = _cifar10().assign(seed_init=lambda f: f.seed, seed_data=lambda f: f.seed * 10, seed=0)
    a = analyze_runs(runs, factor="stability", pool=True, n_resamples=200)
    base = analyze_runs(_cifar10(), factor="stability", pool=True, n_resamples=200)
    assert a.designs[0].reports[0].paired.pvalue == pytest.approx(base.designs[0].reports[0].paired.pvalue)
    with pytest.raises(ValueError, match="appear more than once"):  # without them the runs are duplicates
        analyze_runs(runs.drop(columns=["seed_init", "seed_data"]), factor="stability", pool=True, n_resamples=50)


def test_the_bootstrap_of_a_comparison_does_not_depend_on_what_else_is_analysed(paper):
    alone = analyze_runs(paper_runs(), factor="stability", pool=True, n_resamples=500, where={"dataset": ["cifar100"]})
    b1 = alone.designs[0].reports[0].bootstrap
    b7 = next(d for d in paper.designs if d.stratum["dataset"] == "cifar100").reports[0].bootstrap
    assert b1.seed is not None and b1.seed == b7.seed and b1.confidence_interval == b7.confidence_interval


def test_planning_at_the_ratio_of_interest_matches_the_f_distribution():
    a = analyze_runs(_cifar10(), factor="stability", pool=True, n_resamples=200, primary="F", min_ratio=3.0, power=0.9)
    r = a.designs[0].reports[0]
    lo, hi = st.f.ppf(0.025, 13, 13), st.f.isf(0.025, 13, 13)
    want = st.f.sf(hi / 3.0, 13, 13) + st.f.cdf(lo / 3.0, 13, 13)  # F_obs ~ 3 F(13, 13)
    assert r.power_at_min_ratio.power == pytest.approx(want, rel=1e-9) and r.power_at_min_ratio.label == "planning"
    n = r.seeds_needed[0]
    power = lambda k: st.f.sf(st.f.isf(0.025, k - 1, k - 1) / 3, k - 1, k - 1) + st.f.cdf(st.f.ppf(0.025, k - 1, k - 1) / 3, k - 1, k - 1)  # noqa: E731
    assert power(n) >= 0.9 > power(n - 1)
    assert r.posthoc_power.label == "post-hoc (observed ratio)"
    # Seeds for a log-ratio interval no wider than ln 4: the F interval's width on the log scale.
    k, k_b = a.options["seeds_for_log_ratio_width"]
    assert k_b == k
    width = lambda m: math.log(st.f.isf(0.025, m - 1, m - 1) / st.f.ppf(0.025, m - 1, m - 1))  # noqa: E731
    assert width(k) <= math.log(4) < width(k - 1)
    text = analysis_markdown(a)
    assert "power at VR 3" in text and "seeds/group for 90%" in text and "post-hoc power (observed VR, F)" in text


def test_each_design_ends_with_its_verdicts_after_adjustment(paper):
    text = analysis_markdown(paper)
    sections = text.split("\n### ")[1:-1]  # the designs; the last section is the families
    assert len(sections) == 7
    for d, section in zip(paper.designs, sections):
        tail = section.split("#### Verdict")[1]
        assert tail.count("**Verdict.**") == len(d.reports) and "Holm-adjusted over the primary tests" in tail
        assert "Benjamini-Hochberg over every printed p-value" in tail and "seeds per group" in tail


def test_anova_type_is_used_and_printed():
    runs = _cifar10()
    unbalanced = runs.drop(index=runs[(runs.margin == "clamp") & (runs.stability == "direct")].index[:3])
    a2 = analyze_runs(unbalanced, factor="stability", n_resamples=100)
    a3 = analyze_runs(unbalanced, factor="stability", n_resamples=100, anova_type=3)
    t2, t3 = a2.designs[0].audit.factorial_levene, a3.designs[0].audit.factorial_levene
    assert (t2.anova_type, t3.anova_type) == (2, 3)
    assert t2.term("margin").pvalue != pytest.approx(t3.term("margin").pvalue)
    assert "type III sums of squares" in analysis_markdown(a3) and "type II sums of squares" in analysis_markdown(a2)
    with pytest.raises(ValueError, match="^anova_type: must be 2 or 3"):
        analyze_runs(runs, factor="stability", anova_type=1)


def test_json_carries_roles_adjusted_pvalues_verdicts_and_families(tmp_path, capsys):
    csv = tmp_path / "runs.csv"
    _cifar10().drop(columns=["status", "run_id", "source"]).to_csv(csv, index=False)
    out = tmp_path / "a.json"
    assert main(["analyze", str(csv), "--factor", "stability", "--resamples", "200", "--anova-type", "3",
                 "--json", str(out)]) == 0
    doc = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert doc["options"]["primary"] == DEFAULT_PRIMARY and doc["options"]["anova_type"] == 3
    fam = doc["multiplicity"]
    assert fam["holm"]["method"] == "holm" and fam["benjamini_hochberg"]["method"] == "bh"
    assert "`cffaudit analyze` call" in fam["holm"]["family"]
    comps = doc["designs"][0]["comparisons"]
    assert len(comps) == 2  # within each stability
    for c in comps:
        primary = [t for t in c["tests"] if t["role"] == "primary"]
        assert len(primary) == 1 and primary[0]["pvalue_holm"] == fam["holm"]["adjusted"][fam["holm"]["labels"].index(c["label"])]
        assert all(t["pvalue_bh"] is not None for t in c["tests"])
        assert c["paired"]["pvalue_bh"] is not None and c["bootstrap"]["seed"] is not None
        assert c["verdict"].startswith(c["label"]) and c["power_at_min_ratio"]["label"] == "planning"
        assert set(c["effects"]) >= {"variance_ratio", "sd_ratio", "variance_a", "variance_b", "hedges_g",
                                     "prob_superiority"}
    assert "post-hoc" in doc["designs"][0]["audit"]["comparisons"][0]["posthoc"]


def test_shapiro_rejection_is_attached_as_a_warning():
    rng = np.random.default_rng(3)
    skewed = np.exp(rng.normal(0, 1.2, 20)) + 40
    rows = [{"dataset": "d", "margin": m, "seed": s, "test_acc": float(v), "status": "done", "source": "x.csv"}
            for m, vals in (("clamp", skewed), ("subtract", 75 + rng.normal(0, 1, 20))) for s, v in enumerate(vals, 1)]
    a = analyze_runs(pd.DataFrame(rows), n_resamples=200)
    text = analysis_markdown(a)
    assert "Shapiro-Wilk rejects normality of clamp" in text and "rejects normality" in text


def test_unequal_allocation_in_the_seed_counts():
    a = analyze_runs(_cifar10(), factor="stability", pool=True, n_resamples=100, primary="F", allocation=2.0)
    n_a, n_b = a.options["seeds_for_power"]
    assert n_b == 2 * n_a

    def power(k):  # F-test, var ratio 2, n_A = k, n_B = 2k
        d1, d2 = k - 1, 2 * k - 1
        return st.f.sf(st.f.isf(0.025, d1, d2) / 2, d1, d2) + st.f.cdf(st.f.ppf(0.025, d1, d2) / 2, d1, d2)

    assert power(n_a) >= 0.8 > power(n_a - 1)
    w_a, w_b = a.options["seeds_for_log_ratio_width"]
    assert w_b == 2 * w_a
    width = math.log(st.f.isf(0.025, w_a - 1, w_b - 1) / st.f.ppf(0.025, w_a - 1, w_b - 1))
    assert width <= math.log(4)
    assert f"{n_a} seeds of clamp and {n_b} of subtract (--allocation 2)" in analysis_markdown(a)
    with pytest.raises(ValueError, match="^allocation: must be a ratio"):
        analyze_runs(_cifar10(), allocation=0.0)


def test_a_primary_test_that_cannot_be_computed_is_listed_first_and_left_out_of_holm():
    runs = _cifar10()
    small = runs[(runs.stability == "detach") & (runs.seed <= 4)]  # 4 runs per margin: Bonett needs 5
    a = analyze_runs(small, n_resamples=100)
    r = a.designs[0].reports[0]
    assert r.primary is None and "bonett" in r.skipped_tests and len(a.holm) == 0
    text = analysis_markdown(a)
    first = next(line for line in text.splitlines() if line.startswith("| clamp vs subtract |"))
    assert "| bonett " in first and "| primary " in first and "not computed: a: needs at least 5 values" in first
    assert "the primary test (bonett) could not be computed" in text
