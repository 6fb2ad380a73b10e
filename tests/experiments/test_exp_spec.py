"""Spec parsing, validation before anything runs, expansion and run identity."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cffaudit.config import RunConfig
from cffaudit.experiments.identity import (
    GRADIENT_NEUTRAL_MARGINS,
    PROTOCOL_VERSION,
    canonical_config,
    identity_dict,
    result_protocol,
    run_id,
    stable_hash,
)
from cffaudit.experiments.spec import ExperimentSpec, SpecError, merged_levels, parse_seeds

from .conftest import tiny_spec_dict

REPO = Path(__file__).resolve().parents[2]


# -- seeds -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [("1-7", (1, 2, 3, 4, 5, 6, 7)), ("1-3,10", (1, 2, 3, 10)), ([4, 2], (4, 2)), (5, (5,)), ("0", (0,))],
)
def test_parse_seeds_forms(value, expected):
    assert parse_seeds(value) == expected


@pytest.mark.parametrize("value", ["7-1", "a-b", [1, 1], [], ["1"], -1, True, "1-3,2"])
def test_parse_seeds_rejects(value):
    with pytest.raises(ValueError):
        parse_seeds(value)


# -- validation: errors name the file and the problem ----------------------------------------


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"factors": {"margn": ["clamp"]}}, "unknown factor 'margn'"),
        ({"factors": {"margin": ["clamp", "sqrt"]}}, "'sqrt' is not one of"),
        ({"factors": {"loss.nope": [1]}}, "unknown factor 'loss.nope'"),
        ({"factors": {"margin": []}}, "non-empty list"),
        ({"factors": {"margin": ["clamp", "clamp"]}}, "repeated level"),
        ({"factors": {"seed": [1, 2]}}, "seeds are not a factor"),
        ({"factors": {"device": ["cpu"]}}, "does not change results"),
        ({"base": {"loss": {"margn": "clamp"}}}, "unknown config key"),
        ({"base": {"model": {"embed_dim": "big"}}}, "expected an integer"),
        ({"base": {"seed": 3}}, "list the seeds under 'seeds'"),
        ({"seeds": "1-x"}, "seeds:"),
        ({"extra": 1}, "unknown top-level key"),
        ({"name": "has space"}, "name:"),
        ({"exclude": [{"margin": "sqrt"}]}, "not a level of margin"),
        ({"exclude": [{"stability": "direct"}]}, "not one of the factors"),
        ({"exclude": [{"margin": "clamp"}, {"margin": "subtract"}]}, "removes every condition"),
        # Valid levels, invalid combination: only visible once every config is built.
        ({"factors": {"embed_dim": [16, 15]}}, "condition embed_dim=15"),
    ],
)
def test_bad_specs_are_rejected_with_a_clear_message(tmp_path, write_spec, changes, message):
    path = write_spec(tiny_spec_dict(**changes))
    with pytest.raises(SpecError) as err:
        ExperimentSpec.load(path).expand()
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_missing_seeds_and_bad_yaml(tmp_path, write_spec):
    d = tiny_spec_dict()
    del d["seeds"]
    with pytest.raises(SpecError, match="seeds: missing"):
        ExperimentSpec.load(write_spec(d))
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        ExperimentSpec.load(bad)
    with pytest.raises(SpecError, match="not found"):
        ExperimentSpec.load(tmp_path / "missing.yaml")


# -- expansion --------------------------------------------------------------------------------


def test_expansion_is_the_factorial_times_seeds():
    spec = ExperimentSpec.from_dict(
        tiny_spec_dict(factors={"margin": ["clamp", "subtract"], "loss.stability": ["detach", "direct"]}, seeds="1-3")
    )
    exp = spec.expand()
    assert list(spec.factors) == ["margin", "stability"]  # dotted paths shown by their alias
    assert len(exp.conditions) == 4 and len(exp.runs) == 12 and not exp.shared_runs
    assert len({r.run_id for r in exp.runs}) == 12
    run = next(r for r in exp.runs if r.conditions[0] == {"margin": "subtract", "stability": "direct"} and r.seed == 2)
    assert run.config.loss.margin == "subtract" and run.config.loss.stability == "direct" and run.config.seed == 2
    assert run.config.model.embed_dim == 16  # base applied


def test_exclude_drops_cells():
    spec = ExperimentSpec.from_dict(
        tiny_spec_dict(
            factors={"margin": ["clamp", "subtract"], "stability": ["detach", "direct"]},
            exclude=[{"margin": "subtract", "stability": "direct"}],
        )
    )
    labels = [c.label for c in spec.conditions()]
    assert labels == ["margin=clamp stability=detach", "margin=clamp stability=direct", "margin=subtract stability=detach"]


def test_subtract_runs_are_shared_across_margin_schedules():
    spec = ExperimentSpec.from_dict(
        tiny_spec_dict(factors={"margin_schedule": ["standard", "low"], "margin": ["clamp", "subtract", "none"]}, seeds=[1, 2, 3])
    )
    exp = spec.expand()
    assert exp.n_cells_runs == 18
    # clamp differs per schedule (6 runs); subtract and none ignore it (3 + 3 runs).
    assert len(exp.runs) == 12
    shared = exp.shared_runs
    assert len(shared) == 6 and {r.config.loss.margin for r in shared} == {"subtract", "none"}
    assert all(merged_levels(r.conditions)["margin_schedule"] == "standard|low" for r in shared)
    summary = "\n".join(exp.summary())
    assert "6 run(s) shared across conditions" in summary and "gradient-neutral" in summary


def test_dose_response_subtract_arm_has_the_factorial_ids():
    factorial = ExperimentSpec.load(REPO / "experiments" / "cifar10_factorial.yaml").expand()
    dose = ExperimentSpec.load(REPO / "experiments" / "cifar10_dose_response.yaml").expand()
    fact_ids = {r.run_id for r in factorial.runs}
    sub = [r for r in dose.runs if r.config.loss.margin == "subtract"]
    clamp = [r for r in dose.runs if r.config.loss.margin == "clamp"]
    assert len(sub) == 7 and len(clamp) == 14
    assert {r.run_id for r in sub} <= fact_ids  # reused, as in the paper
    assert not ({r.run_id for r in clamp} & fact_ids)  # the low schedule changes clamp runs
    assert any("share ids" in line for line in dose.summary())


def test_design_hash_ignores_seeds_and_spelling_but_not_design():
    a = ExperimentSpec.from_dict(tiny_spec_dict(seeds=[1, 2])).expand()
    b = ExperimentSpec.from_dict(tiny_spec_dict(seeds="1-9", factors={"loss.margin": ["clamp", "subtract"]})).expand()
    c = ExperimentSpec.from_dict(tiny_spec_dict(factors={"margin": ["clamp", "none"]})).expand()
    d_base = tiny_spec_dict()
    d_base["base"]["stage1"]["epochs"] = 2
    d = ExperimentSpec.from_dict(d_base).expand()
    assert a.design_hash == b.design_hash
    assert len({a.design_hash, c.design_hash, d.design_hash}) == 3


def test_device_override_does_not_change_ids_but_other_overrides_are_refused():
    spec = ExperimentSpec.from_dict(tiny_spec_dict())
    ids = [r.run_id for r in spec.expand().runs]
    assert [r.run_id for r in spec.expand({"device": "auto", "data.data_dir": "/x"}).runs] == ids
    assert spec.expand({"device": "auto"}).runs[0].config.device == "auto"
    with pytest.raises(SpecError, match="can be overridden"):
        spec.expand({"loss.margin": "none"})


# -- identity ----------------------------------------------------------------------------------


def test_run_id_is_stable_and_ignores_non_result_settings():
    cfg = RunConfig().override({"seed": 3})
    # Pinned value: ids must not drift between versions, or every existing store is
    # orphaned. Change only together with identity.PROTOCOL_VERSION (a new training
    # protocol, which must orphan them). Protocol 1 gave this config "4d687b643746".
    assert run_id(cfg) == "18181b1f6828"
    assert run_id(cfg) == run_id(RunConfig().override({"seed": 3}))
    assert run_id(cfg) == run_id(cfg.override({"device": "cpu", "data.data_dir": "/d", "data.download": True}))
    assert run_id(cfg) != run_id(cfg.override({"seed": 4}))
    assert run_id(cfg) != run_id(cfg.override({"loss.stability": "direct"}))
    assert len(run_id(cfg)) == 12


def test_run_id_compares_resolved_values_not_spellings():
    low = RunConfig().override({"loss.margin_schedule": "low"})
    assert run_id(low) == run_id(RunConfig().override({"loss.m0": 0.2}))
    assert run_id(low) != run_id(RunConfig())
    svhn = RunConfig().override({"data.dataset": "svhn"})
    assert run_id(svhn) == run_id(svhn.override({"data.augment": "svhn_easy"}))
    assert run_id(svhn) != run_id(svhn.override({"data.augment": "svhn_hard"}))
    # Synthetic sizes only matter for the synthetic dataset.
    assert run_id(svhn) == run_id(svhn.override({"data.synthetic_train": 7}))
    syn = RunConfig().override({"data.dataset": "synthetic"})
    assert run_id(syn) != run_id(syn.override({"data.synthetic_train": 7}))


# Ids computed by the code before protocol 2 (PYTHONPATH=/work/main/src at commit 4cbe048):
# runs trained under the old defaults (normalisation, initialisation) must not be reused.
PROTOCOL_1_IDS = [
    ({"seed": 3}, "4d687b643746"),
    ({"seed": 0}, "44136fa355b3"),
    ({"loss.margin": "subtract", "seed": 1}, "08cee02bd699"),
    ({"data.dataset": "cifar100", "seed": 1}, "f1a08057d85d"),
    ({"data.dataset": "svhn", "seed": 0}, "413c8367e568"),
]


@pytest.mark.parametrize(("updates", "old_id"), PROTOCOL_1_IDS)
def test_protocol_2_gives_every_earlier_run_a_new_id(updates, old_id):
    cfg = RunConfig().override(updates)
    assert identity_dict(cfg)["protocol"] == PROTOCOL_VERSION == 2
    assert run_id(cfg) != old_id
    # The old id is the same identity without the protocol key: nothing else moved.
    old_ident = {k: v for k, v in identity_dict(cfg).items() if k != "protocol"}
    assert stable_hash(old_ident)[:12] == old_id
    # ...which is what a result that records no protocol (trained before it) is read back as,
    # so a store made before protocol 2 still finds its results.
    assert run_id(cfg, protocol=result_protocol({"status": "done"})) == old_id
    assert run_id(cfg, protocol=result_protocol({"protocol": 2})) == run_id(cfg)


def test_normalization_is_part_of_the_identity_only_when_not_the_default():
    cfg = RunConfig().override({"seed": 3})
    assert "data.normalization" not in identity_dict(cfg)
    own = cfg.override({"data.normalization": "dataset"})
    assert identity_dict(own)["data.normalization"] == "dataset" and run_id(own) != run_id(cfg)


def test_subtract_margin_stays_canonicalised_out_of_run_ids():
    base = RunConfig().override({"loss.margin": "subtract", "seed": 1})
    for updates in ({"loss.margin_schedule": "low"}, {"loss.m0": 0.3, "loss.mL": 0.05}):
        assert run_id(base.override(updates)) == run_id(base)
    assert "subtract" in GRADIENT_NEUTRAL_MARGINS and "clamp" not in GRADIENT_NEUTRAL_MARGINS
    clamp = RunConfig().override({"seed": 1})
    assert run_id(clamp.override({"loss.margin_schedule": "low"})) != run_id(clamp)


SHAPES = [("linear", 1.0), ("linear", 2.0), ("parabolic", 1.0), ("parabolic", 2.5), ("cosine", 1.0),
          ("cosine", 0.5), ("exponential", 1.0), ("exponential", 3.0)]


@pytest.mark.parametrize(("shape", "k"), SHAPES)
@pytest.mark.parametrize("link", ["standard", "weince"])
def test_subtract_margin_stays_canonicalised_out_of_run_ids_for_every_shape(shape, k, link):
    base = RunConfig().override({"loss.margin": "subtract", "loss.link": link, "seed": 1})
    shaped = base.override({"loss.margin_shape": shape, "loss.margin_k": k, "loss.mL": 0.05})
    assert run_id(shaped) == run_id(base)
    assert "loss.margins" not in identity_dict(shaped)


def test_margin_shape_enters_the_id_through_the_resolved_margins():
    clamp = RunConfig().override({"seed": 1})
    ids = {run_id(clamp.override({"loss.margin_shape": s, "loss.margin_k": k})) for s, k in SHAPES}
    # linear ignores k, so linear k=2 is the default run; the other six shapes are new runs.
    assert run_id(clamp.override({"loss.margin_shape": "linear", "loss.margin_k": 2.0})) == run_id(clamp)
    assert len(ids) == 7
    ident = identity_dict(clamp.override({"loss.margin_shape": "cosine"}))
    assert "loss.margin_shape" not in ident and "loss.margin_k" not in ident and "loss.margins" in ident
    # Parabolic with k = 1/2 is the linear schedule: the same margins, the same run.
    assert run_id(clamp.override({"loss.margin_shape": "parabolic", "loss.margin_k": 0.5})) == run_id(clamp)


def test_defaults_of_the_new_loss_fields_leave_run_ids_unchanged():
    # The pinned id of test_run_id_is_stable_and_ignores_non_result_settings, spelt out.
    cfg = RunConfig().override({"seed": 3, "loss.margin_shape": "linear", "loss.margin_k": 1.0,
                                "loss.link": "standard"})
    assert run_id(cfg) == "18181b1f6828"
    assert not any(k.startswith(("loss.link", "loss.weince", "loss.margin_")) for k in identity_dict(cfg))


def test_weince_settings_are_part_of_the_id_only_when_used():
    base = RunConfig().override({"seed": 1})
    weince = base.override({"loss.link": "weince"})
    assert identity_dict(weince)["loss.link"] == "weince" and run_id(weince) != run_id(base)
    # Under the standard link the WEINCE hyperparameters train nothing.
    assert run_id(base.override({"loss.weince.kappa_rho": 5.0, "loss.weince.pl_weight": 0.5})) == run_id(base)
    assert run_id(weince.override({"loss.weince.kappa_rho": 5.0})) != run_id(weince)
    # An auxiliary term's M and beta matter only when its weight is not 0.
    assert run_id(weince.override({"loss.weince.weib_top_m": 10, "loss.weince.weib_beta": 2.0})) == run_id(weince)
    aux = weince.override({"loss.weince.weib_weight": 0.5})
    assert run_id(aux) != run_id(weince)
    assert run_id(aux.override({"loss.weince.weib_top_m": 10})) != run_id(aux)
    assert run_id(aux.override({"loss.weince.pl_top_m": 10})) == run_id(aux)


def test_result_config_round_trips_to_the_same_id():
    cfg = canonical_config(RunConfig().override({"loss.margin": "subtract", "loss.margin_schedule": "low", "seed": 2}))
    stored = cfg.resolved()  # what train_run writes into result.json
    assert run_id(RunConfig.from_dict(stored)) == run_id(cfg)
    assert "device" not in identity_dict(cfg) and "loss.margin_schedule" not in identity_dict(cfg)


# -- the shipped spec files ------------------------------------------------------------------------

SPEC_FILES = sorted((REPO / "experiments").glob("*.yaml"))


def test_every_paper_experiment_has_a_spec():
    names = {p.stem for p in SPEC_FILES}
    assert {
        "quickstart",
        "cifar10_factorial",
        "cifar10_dose_response",
        "cifar100_factorial",
        "svhn_replication",
        "fashion_mnist_replication",
        "svhn_difficulty",
    } <= names


@pytest.mark.parametrize("path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_shipped_specs_are_valid(path):
    spec = ExperimentSpec.load(path)
    exp = spec.expand()
    assert spec.name == path.stem
    assert exp.runs


def test_shipped_specs_match_the_paper_design():
    def runs(name):
        return ExperimentSpec.load(REPO / "experiments" / f"{name}.yaml").expand().runs

    assert len(runs("cifar10_factorial")) == 28
    assert len(runs("cifar100_factorial")) == 20
    svhn = runs("svhn_replication")
    assert len(svhn) == 10 and {r.config.loss.stability for r in svhn} == {"direct"}
    assert len(runs("fashion_mnist_replication")) == 10
    diff = runs("svhn_difficulty")
    assert len(diff) == 30
    # The easy arm is the replication itself (augment auto == svhn_easy for SVHN).
    assert {r.run_id for r in svhn} <= {r.run_id for r in diff}
    for r in runs("cifar10_factorial"):
        assert r.config.stage1.epochs == 600 and r.config.model.depth == 8 and r.seed in range(1, 8)


def test_locality_spec_crosses_margin_with_locality_and_shares_the_local_arm():
    runs = ExperimentSpec.load(REPO / "experiments" / "cifar10_locality.yaml").expand().runs
    assert len(runs) == 42
    assert {r.config.stage1.locality for r in runs} == {"local", "global", "last"}
    factorial = ExperimentSpec.load(REPO / "experiments" / "cifar10_factorial.yaml").expand().runs
    local = {r.run_id for r in runs if r.config.stage1.locality == "local"}
    assert local <= {r.run_id for r in factorial} and len(local) == 14


# -- sources of variance: per-source seeds, probes per encoder, the untrained baseline ----------


def test_defaults_of_the_sources_fields_leave_run_ids_unchanged():
    cfg = RunConfig().override({"seed": 3, "stage2.probe_seeds": 1, "seeds.init": None, "seeds.probe": None})
    assert run_id(cfg) == "18181b1f6828"  # the pinned id above
    assert not any(k.startswith(("seeds.", "stage2.probe_seeds", "stage2.untrained_baseline"))
                   for k in identity_dict(cfg))
    # The baseline is an extra probe on the initial encoder: same model, same test_acc, same id.
    for choice in ("on", "off"):
        assert run_id(cfg.override({"stage2.untrained_baseline": choice})) == run_id(cfg)
    assert run_id(cfg.override({"stage2.probe_seeds": 2})) != run_id(cfg)
    assert run_id(cfg.override({"seeds.init": 1})) != run_id(cfg.override({"seeds.data": 1})) != run_id(cfg)


def test_arms_vary_one_source_at_a_time_and_crossed():
    spec = ExperimentSpec.from_dict({**tiny_spec_dict(), "factors": {"margin": ["clamp", "subtract"]},
                                     "seeds": 0, "arms": [{"seed_init": [1, 2]}, {"seed_data": [1, 2]},
                                                          {"seed_init": [1, 2], "seed_data": [1, 2]}]})
    assert spec.factors["seed_init"] == (1, 2) and spec.factor_paths["seed_data"] == "seeds.data"
    cells = [c.levels for c in spec.conditions()]
    assert len(cells) == 2 * (2 + 2 + 4)  # crossed with the common factor
    assert {"margin": "clamp", "seed_init": 1, "seed_data": None} in cells  # data held at the run seed
    runs = spec.expand().runs
    assert len(runs) == len(cells) and {r.seed for r in runs} == {0}
    assert {(r.config.seeds.init, r.config.seeds.data) for r in runs} == {
        (1, None), (2, None), (None, 1), (None, 2), (1, 1), (1, 2), (2, 1), (2, 2)}


def test_arms_repeating_a_cell_run_it_once():
    spec = ExperimentSpec.from_dict({**tiny_spec_dict(), "factors": {}, "seeds": 0,
                                     "arms": [{"seed_init": [1, 2]}, {"seed_init": [2, 3]}]})
    assert [c.levels["seed_init"] for c in spec.conditions()] == [1, 2, 3]


@pytest.mark.parametrize(
    "arms, message",
    [
        ({"seed_init": [1]}, "arms: expected a list of mappings"),
        ([{"seed_init": 1}], "arms[0].seed_init: expected a non-empty list"),
        ([{"margin": ["clamp"]}], "'margin' is also under factors"),
        ([{"seed_bogus": [1]}], "unknown factor 'seed_bogus'"),
        ([{"seed_init": [-1]}], "seeds.init: must be a non-negative integer"),
    ],
)
def test_bad_arms_are_rejected_with_a_clear_message(arms, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        ExperimentSpec.from_dict({**tiny_spec_dict(), "factors": {"margin": ["clamp"]}, "arms": arms}).expand()


def test_shipped_sources_specs_vary_each_source_alone_and_init_by_data_order():
    for name in ("cifar10_sources", "fashion_mnist_sources"):
        runs = ExperimentSpec.load(REPO / "experiments" / f"{name}.yaml").expand().runs
        assert len(runs) == 4 * 5 + 3 * 3 and {r.seed for r in runs} == {0}
        assert all(r.config.stage2.probe_seeds == 2 for r in runs)
        alone = [r for r in runs if sum(v is not None for v in vars(r.config.seeds).values()) == 1]
        assert len(alone) == 20
    assert {r.config.data.dataset for r in runs} == {"fashion_mnist"} and runs[0].config.model.embed_dim == 64
