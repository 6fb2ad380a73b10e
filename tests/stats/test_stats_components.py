"""Variance components: REML against statsmodels and the closed-form ANOVA estimators
(Searle, Casella & McCulloch 1992, ch. 4, balanced designs), bootstrap intervals and bad input."""

import warnings

import numpy as np
import pandas as pd
import pytest
from statsmodels.regression.mixed_linear_model import MixedLM
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from cffaudit.stats import decompose
from cffaudit.stats.components import parse_spec


def nested_runs(rng, a=12, b=3, n=1, s2_a=4.0, s2_b=1.0, s2_e=0.25, label=None):
    rows = []
    for i in range(a):
        u = rng.normal(0, np.sqrt(s2_a))
        for j in range(b):
            v = rng.normal(0, np.sqrt(s2_b))
            for _ in range(n):
                rows.append({"seed": i, "probe_seed": j, "test_acc": 60 + u + v + rng.normal(0, np.sqrt(s2_e))})
    frame = pd.DataFrame(rows)
    return frame if label is None else frame.assign(margin=label)


def crossed_runs(rng, a=6, b=5, n=1, s2_a=4.0, s2_b=1.0, s2_ab=0.0, s2_e=0.25):
    ua, ub = rng.normal(0, np.sqrt(s2_a), a), rng.normal(0, np.sqrt(s2_b), b)
    rows = []
    for i in range(a):
        for j in range(b):
            w = rng.normal(0, np.sqrt(s2_ab))
            for _ in range(n):
                rows.append({"seed_init": i, "seed_data": j, "test_acc": 60 + ua[i] + ub[j] + w + rng.normal(0, np.sqrt(s2_e))})
    return pd.DataFrame(rows)


def anova_nested(frame, n):
    # Plain loops over the balanced table: the textbook mean squares.
    a_levels = sorted(frame.seed.unique())
    b = frame.groupby("seed").probe_seed.nunique().iloc[0]
    grand = frame.test_acc.mean()
    ss_a = sum(b * n * (frame[frame.seed == i].test_acc.mean() - grand) ** 2 for i in a_levels)
    ss_b = ss_e = 0.0
    for i in a_levels:
        rows = frame[frame.seed == i]
        for _, cell in rows.groupby("probe_seed"):
            ss_b += n * (cell.test_acc.mean() - rows.test_acc.mean()) ** 2
            ss_e += ((cell.test_acc - cell.test_acc.mean()) ** 2).sum()
    a = len(a_levels)
    ms_a, ms_b = ss_a / (a - 1), ss_b / (a * (b - 1))
    if n == 1:
        return [(ms_a - ms_b) / b, ms_b]
    ms_e = ss_e / (a * b * (n - 1))
    return [(ms_a - ms_b) / (b * n), (ms_b - ms_e) / n, ms_e]


def anova_crossed(frame):
    # One run per cell: two-way ANOVA without interaction.
    y = frame.pivot(index="seed_init", columns="seed_data", values="test_acc").to_numpy()
    a, b = y.shape
    g = y.mean()
    ms_a = b * ((y.mean(1) - g) ** 2).sum() / (a - 1)
    ms_b = a * ((y.mean(0) - g) ** 2).sum() / (b - 1)
    ms_e = ((y - y.mean(1, keepdims=True) - y.mean(0, keepdims=True) + g) ** 2).sum() / ((a - 1) * (b - 1))
    return [(ms_a - ms_e) / b, (ms_b - ms_e) / a, ms_e]


@pytest.mark.parametrize("n", [1, 3])
def test_nested_matches_statsmodels_and_the_anova_estimators(n):
    frame = nested_runs(np.random.default_rng(n), n=n)
    res = decompose(frame, "test_acc", "seed/probe_seed", n_resamples=200).condition("")
    fit = MixedLM.from_formula("test_acc ~ 1", groups="seed", re_formula="1", data=frame,
                               vc_formula={"p": "0 + C(probe_seed)"} if n > 1 else None).fit(reml=True)
    direct = [fit.cov_re.iloc[0, 0]] + ([fit.vcomp[0]] if n > 1 else []) + [fit.scale]
    got = [c.variance for c in res.components]
    assert got == pytest.approx(direct, rel=1e-6)
    assert got == pytest.approx(anova_nested(frame, n), rel=1e-4)  # interior: REML == ANOVA
    assert [c.anova for c in res.components] == pytest.approx(anova_nested(frame, n), rel=1e-10)
    assert [c.name for c in res.components][:2] == ["seed", "probe_seed within seed"]
    assert sum(c.share for c in res.components) == pytest.approx(1.0)
    assert res.balanced and res.replicates == n


def test_crossed_matches_statsmodels_and_the_anova_estimators():
    frame = crossed_runs(np.random.default_rng(3))
    res = decompose(frame, "test_acc", "seed_init*seed_data", n_resamples=200).condition("")
    model = MixedLM.from_formula("test_acc ~ 1", groups=np.zeros(len(frame)), re_formula="0", data=frame,
                                 vc_formula={"i": "0 + C(seed_init)", "d": "0 + C(seed_data)"})
    fit = model.fit(reml=True)
    vc = dict(zip(model.exog_vc.names, fit.vcomp))
    got = [c.variance for c in res.components]
    assert got == pytest.approx([vc["i"], vc["d"], fit.scale], rel=1e-5)
    assert got == pytest.approx(anova_crossed(frame), rel=1e-4)
    assert "interaction" in " ".join(res.notes)


def test_crossed_with_replicates_has_an_interaction_component():
    frame = crossed_runs(np.random.default_rng(4), a=5, b=4, n=3, s2_ab=1.0)
    res = decompose(frame, "test_acc", "seed_init*seed_data", n_resamples=100).condition("")
    assert [c.role for c in res.components] == ["A", "B", "A:B", "residual"]
    assert [c.variance for c in res.components] == pytest.approx([c.anova for c in res.components], rel=1e-4)


def test_known_components_are_recovered_and_covered():
    # Many seeds: the estimates approach the simulated components and the intervals cover
    # them (each 95% interval misses 1 time in 20; this data set is one where none does).
    frame = nested_runs(np.random.default_rng(11), a=150, b=4, n=2, s2_a=4.0, s2_b=1.0, s2_e=0.25)
    res = decompose(frame, "test_acc", "seed/probe_seed", n_resamples=300, seed=1).condition("")
    for c, truth in zip(res.components, (4.0, 1.0, 0.25)):
        assert c.variance == pytest.approx(truth, rel=0.3)
        assert c.confidence_interval.low < truth < c.confidence_interval.high


def test_per_condition_ratios_and_determinism():
    rng = np.random.default_rng(6)
    frame = pd.concat([nested_runs(rng, s2_a=9.0, label="clamp"), nested_runs(rng, s2_a=1.0, label="subtract")])
    d = decompose(frame, "test_acc", "seed/probe_seed", by=["margin"], compare="margin", n_resamples=300, seed=3)
    assert [c.condition for c in d.conditions] == ["clamp", "subtract"]
    seed_ratio = d.ratios[0]
    assert (seed_ratio.component, seed_ratio.numerator, seed_ratio.denominator) == ("seed", "clamp", "subtract")
    expected = d.condition("clamp").component("A").variance / d.condition("subtract").component("A").variance
    assert seed_ratio.ratio == pytest.approx(expected)
    assert seed_ratio.confidence_interval.low < seed_ratio.ratio < seed_ratio.confidence_interval.high
    again = decompose(frame, "test_acc", "seed/probe_seed", by=["margin"], compare="margin", n_resamples=300, seed=3)
    assert again.to_dict() == d.to_dict()
    tidy = d.to_frame()
    assert len(tidy) == 4 and set(tidy.condition) == {"clamp", "subtract"}
    md = d.to_markdown()
    assert "probe_seed within seed" in md and "clamp / subtract" in md and "parametric bootstrap" in md


def test_unbalanced_data_refits_reml_in_the_bootstrap():
    frame = nested_runs(np.random.default_rng(7), n=2).iloc[:-3]
    res = decompose(frame, "test_acc", "seed/probe_seed", n_resamples=8).condition("")
    assert not res.balanced and res.replicates is None and all(c.anova is None for c in res.components)
    assert "refitted by REML" in res.interval_method


def test_a_component_at_zero_is_flagged_on_the_boundary():
    frame = nested_runs(np.random.default_rng(8), s2_a=0.0, s2_b=1.0)
    res = decompose(frame, "test_acc", "seed/probe_seed", n_resamples=50).condition("")
    seed = res.component("seed")
    if seed.anova >= 0:  # pragma: no cover - the seed of the data is chosen so that it is negative
        pytest.skip("simulated ANOVA estimate happened to be positive")
    assert seed.on_boundary and seed.variance == pytest.approx(0.0, abs=1e-6)
    assert any("boundary" in n for n in res.notes)
    assert "(boundary)" in decompose(frame, "test_acc", "seed/probe_seed", n_resamples=50).to_markdown()


@pytest.mark.parametrize("spec, message", [
    ("seed/probe_sed", r"^spec: no column 'probe_sed' in the run table \(did you mean 'probe_seed'\?\); columns are"),
    ("seed+probe_seed", r"^spec: 'seed\+probe_seed' is not 'A/B'.*quote it"),
    ("seed/seed", "names 'seed' twice"),
])
def test_bad_specs_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        decompose(nested_runs(np.random.default_rng(0)), "test_acc", spec)


def test_unknown_response_and_by_are_refused_with_the_closest_column():
    frame = nested_runs(np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"^response: no column 'test_ac' .*did you mean 'test_acc'"):
        decompose(frame, "test_ac", "seed/probe_seed")
    with pytest.raises(ValueError, match=r"^by: no column 'margin'"):
        decompose(frame, "test_acc", "seed/probe_seed", by=["margin"])


def test_designs_that_cannot_identify_a_component_are_refused():
    frame = nested_runs(np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"^spec: 'seed' has one level \(0\) in the run table"):
        decompose(frame[frame.seed == 0], "test_acc", "seed/probe_seed")
    with pytest.raises(ValueError, match="no replication within 'seed'.*confounded"):
        decompose(frame[frame.probe_seed == 0].assign(probe_seed=lambda f: f.seed + 100), "test_acc", "seed/probe_seed")
    with pytest.raises(ValueError, match=r"^spec: 'probe_seed' has one level"):
        decompose(frame[frame.probe_seed == 0], "test_acc", "seed/probe_seed")
    nested_as_crossed = frame.assign(probe_seed=frame.seed * 10 + frame.probe_seed)
    with pytest.raises(ValueError, match="are not crossed.*write 'seed/probe_seed'"):
        decompose(nested_as_crossed, "test_acc", "seed*probe_seed")
    with pytest.raises(ValueError, match="^response: 1 value"):
        decompose(frame.assign(test_acc=frame.test_acc.where(frame.index != 2)), "test_acc", "seed/probe_seed")


def _warn_on_fit(monkeypatch, message):
    original = MixedLM.fit

    def fit(self, *args, **kwargs):
        warnings.warn(message, ConvergenceWarning)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MixedLM, "fit", fit)


def test_reml_that_does_not_converge_on_unbalanced_data_is_an_error(monkeypatch):
    _warn_on_fit(monkeypatch, "Gradient optimization failed, |grad| = 1.5")
    frame = nested_runs(np.random.default_rng(7), n=2).iloc[:-3]
    with pytest.raises(ValueError, match=r"^spec: REML did not converge on the unbalanced data.*Gradient optimization failed"):
        decompose(frame, "test_acc", "seed/probe_seed", n_resamples=5)


def test_reml_that_does_not_converge_on_balanced_data_falls_back_to_anova(monkeypatch):
    _warn_on_fit(monkeypatch, "Gradient optimization failed, |grad| = 1.5")
    res = decompose(nested_runs(np.random.default_rng(1)), "test_acc", "seed/probe_seed", n_resamples=20).condition("")
    assert res.method.startswith("ANOVA")
    assert [c.variance for c in res.components] == pytest.approx([max(c.anova, 0) for c in res.components])
    assert any("did not converge" in n for n in res.notes)


def test_boundary_warnings_are_not_failures(monkeypatch):
    _warn_on_fit(monkeypatch, "The MLE may be on the boundary of the parameter space.")
    res = decompose(nested_runs(np.random.default_rng(1)), "test_acc", "seed/probe_seed", n_resamples=20).condition("")
    assert res.method.startswith("REML")


def test_compare_must_be_a_two_level_condition_column():
    rng = np.random.default_rng(2)
    frame = pd.concat([nested_runs(rng, label="clamp"), nested_runs(rng, label="subtract")])
    with pytest.raises(ValueError, match=r"^compare: 'margin' must be one of by"):
        decompose(frame, "test_acc", "seed/probe_seed", compare="margin")
    with pytest.raises(ValueError, match=r"^compare_levels: 'margin' needs two of its levels"):
        decompose(frame, "test_acc", "seed/probe_seed", by=["margin"], compare="margin", compare_levels=("clamp", "x"))
    with pytest.raises(ValueError, match=r"^by: .* includes a column of the spec"):
        decompose(frame, "test_acc", "seed/probe_seed", by=["seed"])


def test_parse_spec():
    cols = ["seed", "probe_seed", "seed_init", "seed_data"]
    assert parse_spec("seed/probe_seed", cols) == ("nested", "seed", "probe_seed")
    assert parse_spec(" seed_init * seed_data ", cols) == ("crossed", "seed_init", "seed_data")


def test_reml_near_the_boundary_is_retried_derivative_free():
    # Unbalanced, no seed or probe variance: statsmodels' default gradient optimisers stop
    # short here; Powell (tried next) reaches the REML optimum that Nelder-Mead finds.
    frame = nested_runs(np.random.default_rng(1), a=8, b=3, n=2, s2_a=0.0, s2_b=0.0, s2_e=1.0).iloc[:-3]
    res = decompose(frame, "test_acc", "seed/probe_seed", n_resamples=3).condition("")
    assert res.method == "REML (statsmodels MixedLM, Powell)"
    model = MixedLM.from_formula("test_acc ~ 1", groups="seed", re_formula="1", data=frame,
                                 vc_formula={"p": "0 + C(probe_seed)"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nm = model.fit(reml=True, method=["nm"])
    assert [c.variance for c in res.components] == pytest.approx(
        [max(nm.cov_re.iloc[0, 0], 0), max(nm.vcomp[0], 0), nm.scale], abs=2e-3)
    assert res.component("seed").on_boundary


def test_probe_rows_turn_probe_accuracies_into_a_nested_design():
    from cffaudit.stats import probe_rows

    runs = pd.DataFrame({"margin": ["clamp"] * 4, "seed": [1, 2, 3, 4], "test_acc": [70.0, 71.0, 69.0, 72.0],
                         "probe_test_accs": [[70.0, 70.5], [71.0, 70.2], "[69.0, 69.4]", (72.0, 71.1)]})
    rows = probe_rows(runs)
    assert len(rows) == 8 and "probe_test_accs" not in rows
    assert rows.probe_seed.tolist() == [0, 1] * 4 and rows.test_acc.tolist()[:4] == [70.0, 70.5, 71.0, 70.2]
    res = decompose(rows, "test_acc", "seed/probe_seed", n_resamples=50).condition("")
    assert [c.name for c in res.components] == ["seed", "probe_seed within seed"]
    with pytest.raises(ValueError, match=r"^accuracies: 1 of 4 run\(s\) have no 'probe_test_accs' \(first: row 2\)"):
        probe_rows(runs.assign(probe_test_accs=[[70.0], [71.0], None, [72.0]]))
    with pytest.raises(ValueError, match=r"^accuracies: no column 'probe_accs'.*did you mean 'probe_test_accs'"):
        probe_rows(runs, accuracies="probe_accs")


def test_the_residual_interval_is_the_chi_square_pivot():
    # On a balanced crossed design the residual mean square is s^2 chi2_df / df, so the
    # basic interval on the log scale approaches the exact interval df s^2 / chi2_{1-q} .. df s^2 / chi2_q.
    from scipy import stats

    frame = crossed_runs(np.random.default_rng(9), a=6, b=5)
    res = decompose(frame, "test_acc", "seed_init*seed_data", n_resamples=4000).condition("")
    resid, df = res.component("residual"), 5 * 4
    exact = (df * resid.variance / stats.chi2.ppf(0.975, df), df * resid.variance / stats.chi2.ppf(0.025, df))
    assert resid.confidence_interval == pytest.approx(exact, rel=0.05)


def test_basic_log_interval_edges():
    from cffaudit.stats.components import _basic_log

    draws = np.array([0.5, 1.0, 2.0, 4.0])
    lo, hi = np.percentile(draws, [2.5, 97.5])
    assert _basic_log(2.0, draws, 0.025) == pytest.approx((4.0 / hi, 4.0 / lo))
    assert _basic_log(0.0, draws, 0.025) == pytest.approx((0.0, hi))  # on the boundary: percentile
    assert _basic_log(2.0, np.array([0.0, 0.0, 1.0, 3.0]), 0.025)[1] == np.inf


def test_unidentified_conditions_can_be_skipped_with_their_reason():
    rng = np.random.default_rng(12)
    good = nested_runs(rng, label="subtract")
    one_seed = nested_runs(rng, a=1, label="clamp")
    frame = pd.concat([one_seed, good])
    with pytest.raises(ValueError, match="'seed' has one level .* in condition 'clamp'"):
        decompose(frame, "test_acc", "seed/probe_seed", by=["margin"], compare="margin", n_resamples=20)
    d = decompose(frame, "test_acc", "seed/probe_seed", by=["margin"], compare="margin", n_resamples=20,
                  skip_unidentified=True)
    assert [c.condition for c in d.conditions] == ["subtract"] and not d.ratios
    assert d.skipped[0][0] == "clamp" and "one level" in d.skipped[0][1]
    assert "clamp: not decomposed" in d.to_markdown()
