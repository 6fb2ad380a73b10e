"""Faults in a finished store: a done run's result.json gone or damaged, a damaged or
deleted store.sqlite, and a store written by the previous schema (version 1)."""

from __future__ import annotations

import logging
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml

from cffaudit.cli import main
from cffaudit.experiments.spec import ExperimentSpec
from cffaudit.experiments.store import DB_NAME, SCHEMA_VERSION, RunStore, StoreError, load_store_results, sweep_lock
from cffaudit.experiments.sweep import run_sweep

from .conftest import tiny_spec_dict
from .fakes import calls_of, fake_train_seeds, read_result

FIXTURES = Path(__file__).parent / "fixtures"


def quiet(**kw):
    return dict(progress=False, say=lambda s: None, **kw)


@pytest.fixture
def finished_store(tmp_path):
    """A finished six-run store (two margins x three seeds) and its spec file."""
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(tiny_spec_dict(seeds="1-3"), sort_keys=False))
    store = tmp_path / "store"
    report = run_sweep(ExperimentSpec.load(spec_path), store, train_fn=fake_train_seeds, **quiet())
    assert report.complete and report.done == 6
    return spec_path, store


def _damage(path: Path, how: str) -> None:
    if how == "deleted":
        path.unlink()
    elif how == "truncated":  # a copy cut short, as a full disk or a killed rsync leaves it
        path.write_bytes(path.read_bytes()[:100])
    elif how == "garbage":
        path.write_bytes(b"\xff\xfe\x00garbage" * 50)


# -- a done run whose result.json is missing or unreadable -------------------------------------


@pytest.mark.parametrize("how", ["deleted", "truncated", "garbage"])
def test_a_done_run_without_a_usable_result_is_reported_never_counted_and_retrained(
        finished_store, how, capsys, caplog, tmp_path):
    spec_path, store = finished_store
    victim = RunStore.open_existing(store).rows()[0].run_id
    _damage(store / "runs" / victim / "result.json", how)

    # sweep --status: shown as missing, with the file and what happens next
    assert main(["sweep", str(spec_path), "--store", str(store), "--status"]) == 0
    status = capsys.readouterr().out
    line = next(l for l in status.splitlines() if l.startswith(victim))
    assert " missing " in line and "result.json" in line and "next sweep trains it again" in line
    assert "5 done, 1 missing" in status

    # the library: not among the done runs, reported with status 'missing' and a warning
    with caplog.at_level(logging.WARNING, logger="cffaudit.experiments.store"):
        done = load_store_results(store)
    assert victim not in {r["run_id"] for r in done} and len(done) == 5
    assert any(victim in m and "not counted" in m for m in caplog.messages)
    everything = {r["run_id"]: r for r in load_store_results(store, status=None)}
    assert everything[victim]["status"] == "missing" and "result.json" in everything[victim]["error"]
    assert "test_acc" not in everything[victim]

    # analyze and report: five runs analysed, the sixth excluded and named in a warning
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cffaudit.experiments.store"):
        assert main(["analyze", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "6 loaded, 5 finished and analysed" in out and "1 other status (excluded)" in out
    assert any(victim in m for m in caplog.messages)
    assert main(["report", "--store", str(store), "--out", str(tmp_path / "report")]) == 0
    assert "5 finished and analysed" in (tmp_path / "report" / "report.md").read_text()

    # the next sweep trains it again, from its checkpoint, and nothing else
    notes = []
    report = run_sweep(ExperimentSpec.load(spec_path), store, train_fn=fake_train_seeds, progress=False, say=notes.append)
    assert report.complete and report.trained == 1 and report.missing == [victim]
    assert any(victim in n and "training it again" in n for n in notes)
    calls = calls_of(store / "runs" / victim)
    assert len(calls) == 2 and "resume=True" in calls[1]
    assert read_result(store / "runs" / victim)["status"] == "done"
    assert len(load_store_results(store)) == 6


def test_a_done_result_of_another_run_is_not_counted(finished_store):
    spec_path, store = finished_store
    a, b = [r.run_id for r in RunStore.open_existing(store).rows()[:2]]
    shutil.copy(store / "runs" / b / "result.json", store / "runs" / a / "result.json")
    rows = {r["run_id"]: r for r in load_store_results(store, status=None)}
    assert rows[a]["status"] == "missing" and "another run" in rows[a]["error"]
    report = run_sweep(ExperimentSpec.load(spec_path), store, train_fn=fake_train_seeds, **quiet())
    assert report.missing == [a] and report.trained == 1


# -- store.sqlite damaged or deleted -------------------------------------------------------------


def test_a_damaged_store_database_is_one_line_that_says_how_to_recover(finished_store, capsys):
    spec_path, store = finished_store
    (store / DB_NAME).write_bytes(b"\x00garbage bytes, not SQLite\n" * 200)
    for argv in (["sweep", str(spec_path), "--store", str(store)],
                 ["sweep", "--store", str(store), "--status"],
                 ["analyze", "--store", str(store)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert f"{store / DB_NAME} is damaged" in err and "move the database aside" in err
        assert "recovers finished runs from their result files" in err
    with pytest.raises(StoreError, match="is damaged"):
        load_store_results(store)

    # Doing what it says: every finished run comes back from its result file, none is retrained.
    (store / DB_NAME).rename(store / f"{DB_NAME}.damaged")
    report = run_sweep(ExperimentSpec.load(spec_path), store, train_fn=fake_train_seeds, **quiet())
    assert report.complete and report.recovered == 6 and report.trained == 0
    assert len(load_store_results(store)) == 6


def test_a_deleted_store_database_is_rebuilt_from_the_result_files(tmp_path):
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(tiny_spec_dict(seeds="1-3"), sort_keys=False))
    spec = ExperimentSpec.load(spec_path)
    store = tmp_path / "store"
    run_sweep(spec, store, train_fn=fake_train_seeds, **quiet(max_runs=4))
    st = RunStore.open_existing(store)
    victim = spec.expand().runs[4].run_id  # a run a killed sweep left half-trained
    st.claim(victim)
    st.run_dir(victim).mkdir(parents=True)
    (st.run_dir(victim) / "checkpoint.pt").write_text("epoch 1")
    for f in store.glob(f"{DB_NAME}*"):
        f.unlink()

    report = run_sweep(spec, store, train_fn=fake_train_seeds, **quiet())
    assert report.complete and report.recovered == 4 and report.trained == 2
    assert "resume=True" in calls_of(st.run_dir(victim))[0]
    assert all(len(calls_of(st.run_dir(r.run_id))) == 1 for r in st.rows())  # nothing trained twice


# -- a store of schema version 1 (outcomes copied into SQLite) -------------------------------------


@pytest.fixture
def v1_store(tmp_path):
    """tests/experiments/fixtures/store_v1, made by the code before schema 2 (see make_store_v1.py):
    two done runs, two failed with a result.json, two whose job never completed."""
    store = tmp_path / "store_v1"
    shutil.copytree(FIXTURES / "store_v1", store)
    with sqlite3.connect(store / DB_NAME) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "1"
        before = conn.execute("SELECT run_id, status, error FROM runs ORDER BY rowid").fetchall()
    return store, before


def test_a_version_1_store_is_migrated_when_opened(v1_store):
    store, before = v1_store
    st = RunStore.open_existing(store)
    assert st.meta()["schema_version"] == str(SCHEMA_VERSION)
    with sqlite3.connect(store / DB_NAME) as conn:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    assert not columns & {"config", "test_acc", "best_val_acc"}
    assert [(r.run_id, r.status) for r in st.rows()] == [(rid, status) for rid, status, _ in before]
    outcomes = {r.run_id: (r, st.outcome(r)) for r in st.rows()}
    done = sorted(o.test_acc for _, o in outcomes.values() if o.status == "done")
    assert done == [51.52, 52.52]
    for rid, status, error in before:
        row, outcome = outcomes[rid]
        assert outcome.status == status
        if status == "failed":
            assert outcome.error == error  # the same account of the failure as before
            # kept in SQLite only where no result.json holds it (the lost worker's jobs)
            assert (row.error is not None) == ("WorkerCrashedError" in error)
    assert st.integrity_ok()


def test_a_version_1_store_is_analysed_after_migration_and_swept_with_its_own_protocol(v1_store, monkeypatch):
    store, _ = v1_store
    # Its runs were trained under protocol 1 (before the original code's normalisation and
    # initialisation became the defaults): analysis reads them as they are...
    assert sorted(r["test_acc"] for r in load_store_results(store)) == [51.52, 52.52]
    failed = [r for r in load_store_results(store, status=None) if r["status"] == "failed"]
    assert sorted(r["error"].split(":")[0] for r in failed) == ["TrainingDiverged"] * 2 + ["WorkerCrashedError"] * 2
    # ...but a sweep under protocol 2 would train other runs: refused, saying why and what to do.
    spec = ExperimentSpec.load(store / "spec.yaml")
    with pytest.raises(StoreError, match="training protocol 1.*protocol 2.*analyze --store.*new --store"):
        run_sweep(spec, store, train_fn=fake_train_seeds, **quiet())
    # Under its own protocol the migrated store sweeps as before: nothing retrained, failures retried.
    import cffaudit.experiments.identity as identity
    import cffaudit.experiments.store_schema as schema

    monkeypatch.setattr(identity, "identity_dict", _protocol_1(identity.identity_dict))
    monkeypatch.setattr(schema, "PROTOCOL_VERSION", 1)
    report = run_sweep(spec, store, train_fn=fake_train_seeds, **quiet())
    assert report.trained == 0 and report.done == 2 and report.failed == 4
    retry = run_sweep(spec, store, train_fn=fake_train_seeds, **quiet(retry_failed=True))
    assert retry.trained == 4 and retry.done == 3 and retry.failed == 3  # temperature 0.77 diverges again


def _protocol_1(identity_dict):
    return lambda cfg, protocol=1: identity_dict(cfg, 1)


def test_a_version_1_store_is_not_migrated_under_a_running_sweep(v1_store):
    store, _ = v1_store
    with sweep_lock(store):
        with pytest.raises(StoreError, match="schema version 1 and must be migrated.*another sweep"):
            RunStore.open_existing(store)
    assert RunStore.open_existing(store).meta()["schema_version"] == str(SCHEMA_VERSION)


def test_a_version_1_store_that_cannot_be_written_is_refused_with_what_to_do(v1_store, monkeypatch):
    import cffaudit.experiments.store as store_module

    def read_only(conn, root):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(store_module, "migrate_v1", read_only)
    store, _ = v1_store
    with pytest.raises(StoreError, match="could not be migrated.*readonly database.*make the store writable"):
        load_store_results(store)
