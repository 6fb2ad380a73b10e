"""`cffaudit sweep` end to end with the real training entry point, including a real
process kill in the middle of a sweep."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cffaudit.cli import main
from cffaudit.experiments.spec import ExperimentSpec
from cffaudit.experiments.store import RunStore, load_store_results, store_factors
from cffaudit.experiments.sweep import run_sweep

from .conftest import TINY_BASE, tiny_spec_dict

REPO = Path(__file__).resolve().parents[2]


def quickstart_tiny(**changes) -> dict:
    """experiments/quickstart.yaml with its data and model shrunk to seconds per run."""
    d = yaml.safe_load((REPO / "experiments" / "quickstart.yaml").read_text())
    d["base"] = copy.deepcopy(TINY_BASE)
    d["seeds"] = [1, 2]
    d.update(changes)
    return d


# -- fast: user errors, status, dry run ------------------------------------------------------


def test_bad_spec_is_rejected_before_any_run_starts(tmp_path, write_spec, capsys):
    path = write_spec(tiny_spec_dict(factors={"margin": ["clamp", "sqrt"]}))
    rc = main(["sweep", str(path), "--store", str(tmp_path / "store")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("cffaudit sweep: error:") and "'sqrt' is not one of" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "store").exists()


def test_status_of_a_missing_store_says_how_to_make_one(tmp_path, capsys):
    assert main(["sweep", "--store", str(tmp_path / "nothing"), "--status"]) == 2
    assert "cffaudit sweep SPEC.yaml --store" in capsys.readouterr().err


def test_missing_spec_and_bad_options(tmp_path, write_spec, capsys):
    assert main(["sweep", "--store", str(tmp_path / "s")]) == 2
    path = write_spec(tiny_spec_dict())
    assert main(["sweep", str(path), "--store", str(tmp_path / "s"), "--address", "auto"]) == 2
    assert "--address only applies to --executor ray" in capsys.readouterr().err


def test_dry_run_expands_without_creating_the_store(tmp_path, write_spec, capsys):
    d = tiny_spec_dict(factors={"margin_schedule": ["standard", "low"], "margin": ["clamp", "subtract"]})
    rc = main(["sweep", str(write_spec(d)), "--store", str(tmp_path / "s"), "--dry-run"])
    out = capsys.readouterr().out
    assert rc == 0 and not (tmp_path / "s").exists()
    assert "2 run(s) shared across conditions" in out and "gradient-neutral" in out
    assert "margin_schedule=low margin=subtract: 2 run(s), 0 done" in out
    assert "dry run: 6 of 6 run(s) would be trained" in out


# -- slow: real training ----------------------------------------------------------------------


@pytest.mark.slow
def test_quickstart_shaped_sweep_end_to_end(tmp_path, write_spec, capsys):
    # A condition whose data does not exist fails; the synthetic runs still finish.
    d = quickstart_tiny(factors={"margin": ["clamp", "subtract"], "dataset": ["synthetic", "cifar10"]})
    d["base"]["data"]["data_dir"] = str(tmp_path / "no-data-here")
    spec_path = write_spec(d)
    store = tmp_path / "store"
    rc = main(["sweep", str(spec_path), "--store", str(store), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 1  # some runs failed
    assert out.count("\ndone    ") + out.startswith("done") == 4
    assert out.count("FAILED  ") == 4 and "DatasetError" in out

    results = load_store_results(store)
    assert store_factors(store) == ["margin", "dataset"]
    assert len(results) == 4 and {r["factors"]["dataset"] for r in results} == {"synthetic"}
    for r in results:
        assert r["status"] == "done" and 0.0 <= r["test_acc"] <= 100.0
        assert r["config"]["model"]["embed_dim"] == 16 and r["env"]["version"]
        assert (store / "runs" / r["run_id"] / "checkpoint.pt").exists()
    failed = [r for r in load_store_results(store, status=None) if r["status"] == "failed"]
    assert len(failed) == 4 and all("DatasetError" in r["error"] for r in failed)

    assert main(["sweep", str(spec_path), "--store", str(store), "--status"]) == 0
    status = capsys.readouterr().out
    assert "4 done, 4 failed" in status and "DatasetError" in status
    for r in results:  # each accuracy with two decimals
        row = next(line for line in status.splitlines() if line.startswith(r["run_id"]))
        assert f" {r['test_acc']:.2f} " in row and f"{r['test_acc']:.4f}" not in row, row
    assert main(["sweep", "--store", str(store), "--status"]) == 0  # spec optional for --status


def _sweep_cmd(spec_path: Path, store: Path) -> list[str]:
    return [sys.executable, "-m", "cffaudit.cli", "sweep", str(spec_path), "--store", str(store), "--no-progress"]


def _counts(store: Path) -> dict[str, int]:
    try:
        return RunStore(store).counts()
    except Exception:  # the store is still being created
        return {"done": 0, "running": 0}


@pytest.mark.slow
def test_sweep_killed_mid_run_resumes_and_matches_an_uninterrupted_sweep(tmp_path, write_spec):
    d = quickstart_tiny()
    d["base"]["stage1"]["epochs"] = 4  # several checkpoints per run, so the kill lands mid-run
    spec_path = write_spec(d)

    reference = tmp_path / "reference"
    run_sweep(ExperimentSpec.load(spec_path), reference, progress=False, say=lambda s: None)
    expected = {r["run_id"]: r["test_acc"] for r in load_store_results(reference)}
    assert len(expected) == 4

    store = tmp_path / "store"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(_sweep_cmd(spec_path, store), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 300
    victim = None
    try:
        # Wait until one run is finished and the next one has written a checkpoint.
        while time.monotonic() < deadline and proc.poll() is None:
            counts = _counts(store)
            if counts["done"] >= 1 and counts["running"] == 1:
                victim = next(r for r in RunStore(store).rows() if r.status == "running")
                if (store / "runs" / victim.run_id / "checkpoint.pt").exists():
                    break
            time.sleep(0.05)
        assert proc.poll() is None, "the sweep finished before it could be killed: " + proc.stdout.read().decode()
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    before = {r.run_id: r for r in RunStore(store).rows()}
    assert before[victim.run_id].status == "running"  # left behind by the killed driver
    done_before = {rid: r for rid, r in before.items() if r.status == "done"}
    assert 1 <= len(done_before) < 4
    mtimes = {rid: (store / "runs" / rid / "result.json").stat().st_mtime_ns for rid in done_before}

    rerun = subprocess.run(_sweep_cmd(spec_path, store), capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "requeued 1 run(s) interrupted" in rerun.stdout

    after = {r.run_id: r for r in RunStore(store).rows()}
    assert all(r.status == "done" for r in after.values()) and len(after) == 4
    # Finished runs were not run again ...
    for rid, r in done_before.items():
        assert after[rid].attempts == 1 and after[rid].finished == r.finished
        assert (store / "runs" / rid / "result.json").stat().st_mtime_ns == mtimes[rid]
        assert (store / "runs" / rid / "log.txt").read_text().count(" attempt ") == 1
    # ... the interrupted one resumed from its checkpoint ...
    log = (store / "runs" / victim.run_id / "log.txt").read_text()
    assert after[victim.run_id].attempts == 2 and "attempt 2" in log and "resuming from checkpoint.pt" in log
    # ... and every accuracy equals the uninterrupted sweep's.
    assert {rid: RunStore(store).outcome(r).test_acc for rid, r in after.items()} == expected


@pytest.mark.slow
def test_seed_groups_with_real_training_equal_solo_runs(tmp_path, write_spec):
    spec_path = write_spec(quickstart_tiny(factors={"margin": ["clamp"]}, seeds=[1, 2, 3]))
    assert main(["sweep", str(spec_path), "--store", str(tmp_path / "solo"), "--no-progress"]) == 0
    assert main(["sweep", str(spec_path), "--store", str(tmp_path / "grouped"), "--no-progress", "--seeds-per-job", "3"]) == 0
    solo = {r["run_id"]: r["test_acc"] for r in load_store_results(tmp_path / "solo")}
    grouped = load_store_results(tmp_path / "grouped")
    assert all(r["ensemble"]["size"] == 3 for r in grouped)  # really trained together
    assert {r["run_id"]: r["test_acc"] for r in grouped} == solo


def test_ray_only_flags_are_refused_with_the_local_executor(tmp_path, capsys):
    from cffaudit.cli import main

    spec = REPO / "experiments" / "quickstart.yaml"
    for flag in (["--cpus-per-run", "2"], ["--max-retries", "1"]):
        assert main(["sweep", str(spec), "--store", str(tmp_path / "s"), "--dry-run", *flag]) == 2
        assert "only applies to --executor ray" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--dry-run", "--max-runs", "-1"], "--max-runs must be >= 0, got -1"),
    (["--dry-run", "--seeds-per-job", "0"], "--seeds-per-job must be >= 1, got 0"),
    (["--workers", "0"], "--workers must be >= 1, got 0"),
    (["--executor", "ray", "--max-retries", "-1"], "--max-retries must be >= 0, got -1"),
    (["--executor", "ray", "--cpus-per-run", "0"], "--cpus-per-run must be > 0, got 0.0"),
])
def test_option_values_are_checked_by_the_library_and_named_as_flags(tmp_path, write_spec, capsys, flags, message):
    path = write_spec(tiny_spec_dict())
    assert main(["sweep", str(path), "--store", str(tmp_path / "s"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"cffaudit sweep: error: {message}"
    assert not (tmp_path / "s").exists()  # refused before the store was made


def test_status_with_a_spec_of_another_design_is_refused(tmp_path, write_spec, capsys):
    from .fakes import fake_train_seeds

    store = tmp_path / "s"
    run_sweep(ExperimentSpec.load(write_spec(tiny_spec_dict())), store, train_fn=fake_train_seeds,
              progress=False, say=lambda s: None)
    other = write_spec(tiny_spec_dict(factors={"margin": ["clamp", "none"]}), name="other.yaml")
    for flags in (["--status"], ["--dry-run"]):
        assert main(["sweep", str(other), "--store", str(store), *flags]) == 2
        err = capsys.readouterr().err
        assert "different design" in err and str(other) in err and "spec.yaml" in err
