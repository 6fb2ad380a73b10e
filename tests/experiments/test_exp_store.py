"""The run store: design checks, schema version, concurrent writers, analysis readers."""

from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3
import threading

import pytest

from cffaudit.experiments.spec import ExperimentSpec
from cffaudit.experiments.store import (
    SCHEMA_VERSION,
    RunStore,
    StoreError,
    load_store_results,
    store_factors,
    sweep_lock,
)
from cffaudit.experiments.sweep import open_store_for, run_sweep

from .conftest import tiny_spec_dict
from .fakes import fake_train_seeds


def _store(tmp_path, **changes):
    exp = ExperimentSpec.from_dict(tiny_spec_dict(**changes)).expand()
    store = open_store_for(exp, tmp_path / "store")
    store.add_runs([(r.run_id, r.seed, list(r.conditions)) for r in exp.runs])
    return store, exp


def test_new_store_layout_and_meta(tmp_path):
    store, exp = _store(tmp_path)
    assert (store.root / "store.sqlite").exists() and (store.root / "runs").is_dir()
    assert (store.root / "spec.yaml").exists()
    meta = store.meta()
    assert meta["schema_version"] == str(SCHEMA_VERSION) and meta["design_hash"] == exp.design_hash
    assert meta["factors"] == ["margin"]
    with sqlite3.connect(store.db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.counts() == {"queued": 4, "running": 0, "done": 0, "failed": 0}


def test_store_of_another_design_is_refused(tmp_path):
    _store(tmp_path)
    with pytest.raises(StoreError, match="different design"):
        _store(tmp_path, factors={"margin": ["clamp", "none"]})


def test_same_design_with_more_seeds_adds_runs(tmp_path):
    store, _ = _store(tmp_path)
    store2, exp2 = _store(tmp_path, seeds="1-3")
    assert len(store2.rows()) == 6 and len(exp2.runs) == 6


def test_other_schema_version_is_refused(tmp_path):
    store, _ = _store(tmp_path)
    with sqlite3.connect(store.db_path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 99"):
        RunStore.open_existing(store.root)
    with pytest.raises(StoreError, match="schema version 99"):
        _store(tmp_path)


def test_open_existing_on_a_plain_directory_says_how_to_make_a_store(tmp_path):
    with pytest.raises(StoreError, match="cffaudit sweep SPEC.yaml --store"):
        RunStore.open_existing(tmp_path)


def test_claim_refuses_a_done_run(tmp_path):
    store, exp = _store(tmp_path)
    rid = exp.runs[0].run_id
    assert store.claim(rid) == 1
    store.finish(rid, status="done")
    with pytest.raises(StoreError, match="already done"):
        store.claim(rid)


def test_second_driver_on_the_same_store_is_refused(tmp_path):
    store, _ = _store(tmp_path)
    with sweep_lock(store.root):
        with pytest.raises(StoreError, match="another sweep"):
            with sweep_lock(store.root):
                pass
    with sweep_lock(store.root):  # released on exit
        pass


# -- concurrency --------------------------------------------------------------------------


def _hammer(root, run_ids, rounds):
    store = RunStore(root)
    for _ in range(rounds):
        for rid in run_ids:
            store.claim(rid)
            store.finish(rid, status="failed", error="x" * 200)
            store.requeue("failed")


def test_concurrent_threads_and_processes_do_not_corrupt_the_store(tmp_path):
    exp_dict = tiny_spec_dict(seeds="1-8")
    exp = ExperimentSpec.from_dict(exp_dict).expand()
    store = open_store_for(exp, tmp_path / "store")
    store.add_runs([(r.run_id, r.seed, list(r.conditions)) for r in exp.runs])
    ids = [r.run_id for r in exp.runs]
    rounds = 10
    # Every run is hammered by one writer; the writers share the database file.
    # Two threads in this process and two spawned processes.
    chunks = [ids[i::4] for i in range(4)]
    threads = [threading.Thread(target=_hammer, args=(store.root, chunks[i], rounds)) for i in range(2)]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(store.root, chunks[i], rounds)) for i in range(2, 4)]
    for w in threads + procs:
        w.start()
    for w in threads + procs:
        w.join(timeout=120)
    assert all(p.exitcode == 0 for p in procs)
    assert store.integrity_ok()
    rows = store.rows()
    assert len(rows) == len(ids)
    # Each claim counted exactly once: no lost updates under contention.
    assert all(r.attempts == rounds for r in rows)
    assert all(r.status == "queued" for r in rows)


def test_concurrent_finishes_of_many_runs(tmp_path):
    store, exp = _store(tmp_path, seeds="1-20")
    ids = [r.run_id for r in exp.runs]

    def finish(rid):
        store.claim(rid)
        store.finish(rid, status="done", wall_s=float(len(rid)))

    threads = [threading.Thread(target=finish, args=(rid,)) for rid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.counts()["done"] == len(ids)
    assert store.integrity_ok()


# -- what analysis reads ---------------------------------------------------------------------


def test_load_store_results_and_factors(tmp_path, write_spec):
    d = tiny_spec_dict(factors={"margin_schedule": ["standard", "low"], "margin": ["clamp", "subtract"]}, seeds=[1, 2])
    spec = ExperimentSpec.from_dict(d)
    report = run_sweep(spec, tmp_path / "store", train_fn=fake_train_seeds, progress=False, say=lambda s: None)
    assert report.done == 6  # 2 clamp schedules x 2 seeds + 2 shared subtract runs
    assert store_factors(tmp_path / "store") == ["margin_schedule", "margin"]
    results = load_store_results(tmp_path / "store")
    assert len(results) == 6
    for r in results:
        assert set(r["factors"]) == {"margin_schedule", "margin"}
        assert r["status"] == "done" and isinstance(r["test_acc"], float)
        assert r["config"]["loss"]["margin"] == r["factors"]["margin"]
        assert r["seed"] == r["config"]["seed"]
        assert json.loads((tmp_path / "store" / "runs" / r["run_id"] / "result.json").read_text())["test_acc"] == r["test_acc"]
    shared = [r for r in results if r["factors"]["margin"] == "subtract"]
    assert len(shared) == 2 and all(r["factors"]["margin_schedule"] == "standard|low" for r in shared)
    assert all(len(r["conditions"]) == 2 for r in shared)
