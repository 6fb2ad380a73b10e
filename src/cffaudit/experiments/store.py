"""The run store: one directory per experiment, read by `cffaudit analyze` and `report`.

Layout::

    DIR/store.sqlite        runs table (status, attempts, timings, config, levels) + meta
    DIR/spec.yaml           the spec the store was made from (latest seed list)
    DIR/runs/<run_id>/      result.json (atomic, outcome-tagged), checkpoint.pt, log.txt
    DIR/.sweep.lock         held (flock) by the one sweep driving this store

SQLite runs in WAL mode with a busy timeout and every write in a ``BEGIN IMMEDIATE``
transaction, so several threads or processes can report at once. Only the sweep
driver writes in normal use; workers write their own run directories.

A store belongs to one design: the spec's factors and the resolved config of every
condition (hashed). Opening it with another design, or a store written by another
schema version, is refused. The seed list is *not* part of the design: running the
same spec with more seeds adds runs to the store, and runs of seeds no longer listed
are kept.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Optional

from cffaudit.atomic import atomic_write_text
from cffaudit.config import RESULT_NAME

SCHEMA_VERSION = 1
DB_NAME = "store.sqlite"
STATUSES = ("queued", "running", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id       TEXT PRIMARY KEY,
    seed         INTEGER NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    error        TEXT,
    traceback    TEXT,
    added        TEXT NOT NULL,
    started      TEXT,
    finished     TEXT,
    wall_s       REAL,
    worker       TEXT,
    config       TEXT NOT NULL,
    conditions   TEXT NOT NULL,
    test_acc     REAL,
    best_val_acc REAL,
    reused_from  TEXT
);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
"""


class StoreError(RuntimeError):
    """A store that cannot be used as asked; the message says what to do instead."""


@dataclass(frozen=True)
class RunRow:
    """One row of the runs table, decoded."""

    run_id: str
    seed: int
    status: str
    attempts: int
    error: Optional[str]
    traceback: Optional[str]
    added: str
    started: Optional[str]
    finished: Optional[str]
    wall_s: Optional[float]
    worker: Optional[str]
    config: dict[str, Any]
    conditions: list[dict[str, Any]]
    test_acc: Optional[float]
    best_val_acc: Optional[float]
    reused_from: Optional[str]


def now_iso() -> str:
    """UTC timestamp with seconds, as stored."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class RunStore:
    """A run store directory. Cheap to construct; every call opens its own connection.

    Use :meth:`create_or_open` (sweeps) or :meth:`open_existing` (status, analysis).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.db_path = self.root / DB_NAME

    # -- opening --------------------------------------------------------------------
    @classmethod
    def open_existing(cls, root: str | Path) -> "RunStore":
        """Open a store made by `cffaudit sweep`, checking its schema version."""
        store = cls(root)
        if not store.db_path.exists():
            raise StoreError(
                f"{store.root} is not a run store (no {DB_NAME}); create one with "
                f"`cffaudit sweep SPEC.yaml --store {store.root}`"
            )
        store._check_schema()
        return store

    @classmethod
    def create_or_open(
        cls,
        root: str | Path,
        *,
        spec_name: str,
        design_hash: str,
        factors: list[str],
        factor_paths: dict[str, str],
        spec_text: str,
    ) -> "RunStore":
        """Create the store for a design, or open it if it was made for the same one."""
        store = cls(root)
        store.root.mkdir(parents=True, exist_ok=True)
        (store.root / "runs").mkdir(exist_ok=True)
        store._init_schema()
        with store._tx() as conn:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if not meta:
                rows = {
                    "schema_version": str(SCHEMA_VERSION),
                    "spec_name": spec_name,
                    "design_hash": design_hash,
                    "factors": json.dumps(factors),
                    "factor_paths": json.dumps(factor_paths),
                    "created": now_iso(),
                }
                conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", rows.items())
            else:
                _check_schema_version(store.root, meta)
                if meta.get("design_hash") != design_hash:
                    raise StoreError(
                        f"{store.root} holds runs of spec {meta.get('spec_name')!r} with a different "
                        f"design (factors {json.loads(meta.get('factors', '[]'))}, base config or levels "
                        "differ); a store keeps one design so its results stay comparable. Use a new "
                        "--store directory for this spec (only the seed list may change in a store)"
                    )
        atomic_write_text(store.root / "spec.yaml", spec_text)
        return store

    def _init_schema(self) -> None:
        conn = self._connect()
        try:
            # WAL lets readers (status, analysis) run while a sweep writes.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
        finally:
            conn.close()

    def _check_schema(self) -> None:
        with self._read() as conn:
            try:
                meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{self.db_path} is not a readable run store: {exc}") from None
        _check_schema_version(self.root, meta)

    # -- connections ------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, timeout=60.0, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 60000")
        conn.row_factory = sqlite3.Row
        return conn

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; IMMEDIATE takes the write lock up front so two writers
        queue on the busy timeout instead of failing half-way with 'database is locked'."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            yield conn
        finally:
            conn.close()

    # -- meta ---------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        """The meta table, with JSON values decoded."""
        with self._read() as conn:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        for k in ("factors", "factor_paths"):
            if k in meta:
                meta[k] = json.loads(meta[k])
        return meta

    def factors(self) -> list[str]:
        return list(self.meta().get("factors", []))

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    # -- writes -------------------------------------------------------------------------
    def add_runs(self, runs: list[tuple[str, int, dict[str, Any], list[dict[str, Any]]]]) -> int:
        """Insert (run_id, seed, config, conditions) rows not yet present; returns how many
        were new. Existing rows keep their status and results; their cells are updated."""
        added = 0
        with self._tx() as conn:
            for rid, seed, config, conditions in runs:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO runs (run_id, seed, status, added, config, conditions) "
                    "VALUES (?, ?, 'queued', ?, ?, ?)",
                    (rid, seed, now_iso(), json.dumps(config, sort_keys=True), json.dumps(conditions)),
                )
                if cur.rowcount:
                    added += 1
                else:
                    conn.execute("UPDATE runs SET conditions = ? WHERE run_id = ?", (json.dumps(conditions), rid))
        return added

    def requeue(self, status: str, run_ids: Optional[list[str]] = None) -> list[str]:
        """Set the runs with `status` (all, or those among `run_ids`) back to queued.
        Their checkpoints stay, so they resume."""
        with self._tx() as conn:
            ids = [r[0] for r in conn.execute("SELECT run_id FROM runs WHERE status = ?", (status,))]
            if run_ids is not None:
                wanted = set(run_ids)
                ids = [i for i in ids if i in wanted]
            conn.executemany("UPDATE runs SET status = 'queued' WHERE run_id = ?", [(i,) for i in ids])
        return ids

    def claim(self, run_id: str, worker: Optional[str] = None) -> int:
        """Mark a run running, count the attempt; returns the attempt number."""
        with self._tx() as conn:
            row = conn.execute("SELECT status, attempts FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise StoreError(f"run {run_id} is not in {self.root}")
            if row["status"] == "done":
                raise StoreError(f"run {run_id} is already done; it must not run twice")
            conn.execute(
                "UPDATE runs SET status = 'running', attempts = attempts + 1, started = ?, "
                "finished = NULL, worker = ? WHERE run_id = ?",
                (now_iso(), worker or worker_name(), run_id),
            )
            return int(row["attempts"]) + 1

    def finish(
        self,
        run_id: str,
        *,
        status: str,
        error: Optional[str] = None,
        traceback: Optional[str] = None,
        test_acc: Optional[float] = None,
        best_val_acc: Optional[float] = None,
        wall_s: Optional[float] = None,
        worker: Optional[str] = None,
        reused_from: Optional[str] = None,
    ) -> None:
        """Record the outcome of an attempt (status 'done' or 'failed')."""
        if status not in ("done", "failed"):
            raise ValueError(f"status: a finished run is 'done' or 'failed', got {status!r}")
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE runs SET status = ?, error = ?, traceback = ?, test_acc = ?, best_val_acc = ?, "
                "finished = ?, wall_s = ?, worker = COALESCE(?, worker), reused_from = ? WHERE run_id = ?",
                (status, error, traceback, test_acc, best_val_acc, now_iso(), wall_s, worker, reused_from, run_id),
            )
            if cur.rowcount != 1:
                raise StoreError(f"run {run_id} is not in {self.root}")

    # -- reads --------------------------------------------------------------------------
    def rows(self, run_ids: Optional[list[str]] = None) -> list[RunRow]:
        """Runs in the order they were added (optionally only `run_ids`)."""
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM runs ORDER BY rowid").fetchall()
        out = [_decode(r) for r in rows]
        if run_ids is not None:
            wanted = set(run_ids)
            out = [r for r in out if r.run_id in wanted]
        return out

    def row(self, run_id: str) -> Optional[RunRow]:
        with self._read() as conn:
            r = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return _decode(r) if r else None

    def counts(self, run_ids: Optional[list[str]] = None) -> dict[str, int]:
        counts = {s: 0 for s in STATUSES}
        for r in self.rows(run_ids):
            counts[r.status] += 1
        return counts

    def integrity_ok(self) -> bool:
        with self._read() as conn:
            return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# -- the single-driver lock ----------------------------------------------------------


@contextlib.contextmanager
def sweep_lock(root: str | Path) -> Iterator[None]:
    """Hold the store's driver lock; a second sweep on the same store is refused.

    The lock is an flock, so the kernel drops it when the holder dies: a run still
    marked 'running' after a sweep starts is certainly left over from a killed one.
    """
    import fcntl

    path = Path(root) / ".sweep.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise StoreError(
                f"another sweep ({holder}) is running on {root}; wait for it to finish or stop it "
                "(use --status to watch it)"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{worker_name()} since {now_iso()}\n")
        f.flush()
        yield
    finally:
        f.close()  # closing the descriptor releases the flock


# -- what analysis reads ----------------------------------------------------------------


def load_store_results(store_dir: str | Path, status: Optional[str] = "done") -> list[dict[str, Any]]:
    """Every run of a store as a dict: its result.json merged with the store's record.

    Keys: everything in result.json (config, test_acc, best_val_acc, history, timing,
    env, ...) plus ``run_id``, ``seed``, ``status``, ``attempts``, ``factors`` (factor
    name -> level for the spec's factors; a run that stands for several cells has the
    differing levels joined by '|', e.g. ``"standard|low"``), ``conditions`` (the list
    of cells it stands for), ``reused_from`` and ``result_path``.

    Args:
        store_dir: the directory given to ``cffaudit sweep --store``.
        status: only runs with this status ("done" by default); None for all runs.
    """
    from cffaudit.experiments.spec import merged_levels

    store = RunStore.open_existing(store_dir)
    out = []
    for row in store.rows():
        if status is not None and row.status != status:
            continue
        path = store.run_dir(row.run_id) / RESULT_NAME
        record: dict[str, Any] = {}
        if path.exists():
            try:
                record = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                record = {}
        if not record:
            record = {"config": row.config, "test_acc": row.test_acc, "best_val_acc": row.best_val_acc}
        record.update(
            run_id=row.run_id,
            seed=row.seed,
            status=row.status,
            attempts=row.attempts,
            factors=merged_levels(row.conditions),
            conditions=row.conditions,
            reused_from=row.reused_from,
            result_path=str(path),
        )
        if row.status == "failed":
            record.setdefault("error", row.error)
        out.append(record)
    return out


def store_factors(store_dir: str | Path) -> list[str]:
    """The factor names of the store's spec, in spec order (e.g. ['margin', 'stability'])."""
    return RunStore.open_existing(store_dir).factors()


# -- helpers ------------------------------------------------------------------------


def _check_schema_version(root: Path, meta: dict[str, str]) -> None:
    version = meta.get("schema_version")
    if version != str(SCHEMA_VERSION):
        raise StoreError(
            f"{root} was written by store schema version {version}, this cffaudit reads version "
            f"{SCHEMA_VERSION}; open it with the cffaudit version that made it, or sweep into a new --store"
        )


def _decode(r: sqlite3.Row) -> RunRow:
    d = dict(r)
    d["config"] = json.loads(d["config"])
    d["conditions"] = json.loads(d["conditions"])
    return RunRow(**d)
