"""`sweep --status` tells a run whose sweep process is gone from one still training, and
an interrupted sweep says how to resume."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import cffaudit.cli.sweep as sweep_cli
from cffaudit.cli import main
from cffaudit.experiments.lock import owner_is_gone
from cffaudit.experiments.spec import ExperimentSpec
from cffaudit.experiments.sweep import open_store_for

from .conftest import tiny_spec_dict


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_owner_is_gone_only_for_a_dead_process_on_this_host():
    host = socket.gethostname()
    assert owner_is_gone(f"{host}:{_dead_pid()}")
    assert not owner_is_gone(f"{host}:{os.getpid()}")
    assert not owner_is_gone(f"another-host-{host}:{_dead_pid()}")  # cannot tell: not gone
    assert not owner_is_gone("not an owner")


def test_status_shows_a_run_of_a_dead_sweep_as_interrupted(tmp_path, write_spec, capsys):
    spec_path = write_spec(tiny_spec_dict())
    expansion = ExperimentSpec.load(spec_path).expand()
    store = open_store_for(expansion, tmp_path / "store")
    store.add_runs([(r.run_id, r.seed, list(r.conditions)) for r in expansion.runs])
    dead, alive = expansion.runs[0].run_id, expansion.runs[1].run_id
    store.claim(dead, worker=f"{socket.gethostname()}:{_dead_pid()}")
    store.claim(alive, worker=f"{socket.gethostname()}:{os.getpid()}")
    assert main(["sweep", "--store", str(tmp_path / "store"), "--status"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.split()}
    assert " interrupted " in lines[dead] and "resumes on the next sweep" in lines[dead]
    assert " running " in lines[alive] and "interrupted" not in lines[alive]
    assert "1 running" in out and "1 interrupted" in out and "run the sweep command again" in out


def test_interrupted_sweep_says_rerunning_resumes(tmp_path, write_spec, capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep_cli, "_sweep", interrupted)
    assert main(["sweep", str(write_spec(tiny_spec_dict())), "--store", str(tmp_path / "s")]) == 130
    err = capsys.readouterr().err
    assert err.startswith("cffaudit sweep: interrupted; run the same command again to resume")
