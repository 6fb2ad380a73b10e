"""The store's SQLite schema, its migration from older versions, and what a damaged
database file means to the user.

Version 1 copied every run's outcome (config, accuracies, error, traceback) from its
result.json into SQLite. Version 2 keeps queue state only; its ``error`` and
``traceback`` columns hold the failure of a job that wrote no result. The
``slurm_jobs`` table (the Slurm job of each run submitted through ``--executor
slurm``) was added to version 2 without a version change: it is created when missing,
and a store without it simply has no Slurm jobs. So was ``slurm_submissions``: the
runs of a submission the driver is making (written before sbatch, replaced by their
``slurm_jobs`` rows once sbatch has answered), by which a restarted driver finds the
jobs of a submission whose driver died before recording them.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from cffaudit.config import PROTOCOL_VERSION, RESULT_NAME

class StoreError(ValueError):
    """A store that cannot be used as asked; the message says what to do instead.

    A ValueError, like a bad argument: callers that report those as one-line user
    errors (the report's loaders, the CLI) do the same for a store.
    """


SCHEMA_VERSION = 2
DB_NAME = "store.sqlite"

_RUNS_COLUMNS = """
    run_id       TEXT PRIMARY KEY,
    seed         INTEGER NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    error        TEXT,     -- why a job that wrote no result failed (else in result.json)
    traceback    TEXT,
    added        TEXT NOT NULL,
    started      TEXT,
    finished     TEXT,
    wall_s       REAL,
    worker       TEXT,
    conditions   TEXT NOT NULL,
    reused_from  TEXT
"""

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs ({_RUNS_COLUMNS});
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
CREATE TABLE IF NOT EXISTS slurm_jobs (
    run_id     TEXT PRIMARY KEY,
    job_key    TEXT NOT NULL,   -- the sweep's job: the run's id, or its seed group's id
    slurm_id   TEXT NOT NULL,   -- ARRAYJOB_TASK, as sacct and squeue name it
    state      TEXT,            -- as the driver last saw it (PENDING, RUNNING, CANCELLED, ...)
    reason     TEXT,
    submitted  TEXT NOT NULL,
    collected  INTEGER NOT NULL DEFAULT 0  -- its outcome was handed to the driver
);
CREATE TABLE IF NOT EXISTS slurm_submissions (
    run_id     TEXT PRIMARY KEY,
    job_key    TEXT NOT NULL,
    job_name   TEXT NOT NULL,     -- the submission's --job-name, unique to it
    task       INTEGER NOT NULL,  -- the job's place in the submission (its array task id)
    tasks      INTEGER NOT NULL,  -- the submission's job count (1: a plain job, not an array)
    submitted  TEXT NOT NULL
);
"""

#: Columns carried over from version 1 (the rest were copies of result.json).
_KEPT = "run_id, seed, status, attempts, error, traceback, added, started, finished, wall_s, worker, conditions, reused_from"


def migrate_v1(conn: sqlite3.Connection, root: Path) -> None:
    """Rewrite a version-1 runs table as version 2, inside the caller's transaction.

    A failed run's error stays in the store only where its result.json does not hold
    the same error, i.e. where the store's record is the only account of the failure.
    """
    conn.execute(f"CREATE TABLE runs_v2 ({_RUNS_COLUMNS})")
    conn.execute(f"INSERT INTO runs_v2 ({_KEPT}) SELECT {_KEPT} FROM runs ORDER BY rowid")
    failed = conn.execute("SELECT run_id, error FROM runs_v2 WHERE status = 'failed'").fetchall()
    for run_id, error in failed:
        if error is not None and _result_error(root / "runs" / run_id / RESULT_NAME) == error:
            conn.execute("UPDATE runs_v2 SET error = NULL, traceback = NULL WHERE run_id = ?", (run_id,))
    conn.execute("UPDATE runs_v2 SET error = NULL, traceback = NULL WHERE status != 'failed'")
    conn.execute("DROP TABLE runs")
    conn.execute("ALTER TABLE runs_v2 RENAME TO runs")
    conn.execute("CREATE INDEX IF NOT EXISTS runs_status ON runs (status)")
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))


def _result_error(path: Path):
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return result.get("error") if isinstance(result, dict) and result.get("status") == "failed" else None


def is_damaged(exc: sqlite3.DatabaseError) -> bool:
    """Whether `exc` says the database file is not SQLite or is corrupt (not merely busy)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")) or "not a database" in str(exc) or "malformed" in str(exc)


def damaged_message(root: Path, exc: BaseException) -> str:
    """One line: what is wrong with the database file and how to rebuild it."""
    db = root / DB_NAME
    return (
        f"{db} is damaged ({exc}); the runs' results are safe in {root / 'runs'}: move the database aside "
        f"(mv {db} {db}.damaged, with any {DB_NAME}-wal/-shm file beside it) and run the same `cffaudit sweep "
        f"SPEC.yaml --store {root}` again, which rebuilds the store and recovers finished runs from their result files"
    )


def check_design(root: Path, meta: dict[str, Any], design_hash: str, source: Any = None) -> None:
    """Refuse a spec whose design (hash) is not the one the store at `root` was made for."""
    if meta.get("design_hash") != design_hash:
        protocol = int(meta.get("protocol") or 1)  # stores made before protocol 2 recorded none
        if protocol != PROTOCOL_VERSION:
            raise StoreError(
                f"{root} holds runs trained under training protocol {protocol}, and this cffaudit trains "
                f"under protocol {PROTOCOL_VERSION} (other defaults: see PROTOCOL_VERSION in cffaudit.config), "
                "so its runs cannot be continued or extended; `cffaudit analyze --store` and `report` still "
                f"read them as they are: sweep into a new --store directory"
            )
        factors = meta.get("factors", "[]")
        factors = json.loads(factors) if isinstance(factors, str) else factors
        raise StoreError(
            f"{root} holds runs of spec {meta.get('spec_name')!r} with a different design "
            f"(factors {factors}, base config or levels differ)" + (f" than {source}" if source else "")
            + "; a store keeps one design so its results stay comparable. Use the spec in "
            f"{root / 'spec.yaml'} or a new --store directory (only the seed list may change in a store)"
        )


def check_schema_version(root: Path, meta: dict[str, str]) -> None:
    """Refuse a store written by another schema version than this one."""
    version = meta.get("schema_version")
    if version != str(SCHEMA_VERSION):
        raise StoreError(
            f"{root} was written by store schema version {version}, this cffaudit reads version "
            f"{SCHEMA_VERSION}; open it with the cffaudit version that made it, or sweep into a new --store"
        )
