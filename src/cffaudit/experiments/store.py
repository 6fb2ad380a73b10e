"""The run store: one directory per experiment, read by `cffaudit analyze` and `report`.

Layout::

    DIR/store.sqlite        the queue: runs (status, attempts, owner, timings, levels) + meta
    DIR/spec.yaml           the spec the store was made from (latest seed list)
    DIR/runs/<run_id>/      result.json (atomic, outcome-tagged), checkpoint.pt, log.txt
    DIR/.sweep.lock         held (flock) by the one sweep driving this store
    DIR/slurm/<jobid>/      sbatch script, pickles and Slurm logs of --executor slurm tasks

SQLite holds queue state only. A run's outcome (config, accuracies, history, error,
traceback) lives in its result.json and nowhere else (read through :mod:`.outcomes`),
except for a job that never completed (a killed worker): its runs wrote no result, so
the store keeps why they failed. A version-1 store, which copied outcomes into SQLite,
is migrated when opened. A damaged store.sqlite is refused with how to rebuild it:
moved aside, the next sweep recovers finished runs from their result files.

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
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from cffaudit.atomic import atomic_write_text
from cffaudit.config import PROTOCOL_VERSION, RESULT_NAME
from cffaudit.experiments.lock import now_iso, sweep_lock, worker_name
from cffaudit.experiments.outcomes import MISSING, MISSING_CONSEQUENCE, Outcome, outcome_of
from cffaudit.experiments.store_schema import (
    DB_NAME,
    SCHEMA,
    SCHEMA_VERSION,
    StoreError,
    check_design,
    check_schema_version,
    damaged_message,
    is_damaged,
    migrate_v1,
)

STATUSES = ("queued", "running", "done", "failed")
log = logging.getLogger(__name__)

__all__ = [
    "DB_NAME", "SCHEMA_VERSION", "RunRow", "RunStore", "StoreError",
    "load_store_results", "now_iso", "store_factors", "sweep_lock", "worker_name",
]


@dataclass(frozen=True)
class RunRow:
    """One row of the runs table, decoded."""

    run_id: str
    seed: int
    status: str
    attempts: int
    error: Optional[str]  # only for a job that wrote no result; see outcome()
    traceback: Optional[str]
    added: str
    started: Optional[str]
    finished: Optional[str]
    wall_s: Optional[float]
    worker: Optional[str]
    conditions: list[dict[str, Any]]
    reused_from: Optional[str]


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
    def exists_at(cls, root: str | Path) -> bool:
        """Whether `root` holds a store's database (it may still be damaged or old)."""
        return (Path(root) / DB_NAME).exists()

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
        store._migrate_if_old()
        with store._tx() as conn:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if not meta:
                rows = {
                    "schema_version": str(SCHEMA_VERSION),
                    "spec_name": spec_name,
                    "design_hash": design_hash,
                    "protocol": str(PROTOCOL_VERSION),
                    "factors": json.dumps(factors),
                    "factor_paths": json.dumps(factor_paths),
                    "created": now_iso(),
                }
                conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", rows.items())
            else:
                check_schema_version(store.root, meta)
                check_design(store.root, meta, design_hash)
        atomic_write_text(store.root / "spec.yaml", spec_text)
        return store

    def check_design(self, design_hash: str, source: Any = None) -> None:
        """Refuse a spec (read from `source`) whose design is not this store's."""
        check_design(self.root, self.meta(), design_hash, source)

    def _init_schema(self) -> None:
        with self._guard():
            conn = self._connect()
            try:
                # WAL lets readers (status, analysis) run while a sweep writes.
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(SCHEMA)
            finally:
                conn.close()

    def _check_schema(self) -> None:
        with self._read() as conn:
            try:
                meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            except sqlite3.OperationalError as exc:  # a SQLite file, but not a store's
                raise StoreError(f"{self.db_path} is not a readable run store: {exc}") from None
        if meta.get("schema_version") == "1":
            self._migrate_if_old()
            return
        check_schema_version(self.root, meta)

    def _migrate_if_old(self) -> None:
        """Bring a version-1 store to this version, once, while no sweep drives it."""
        with self._read() as conn:
            version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if version is None or version[0] != "1":
            return
        try:
            with sweep_lock(self.root):
                with self._tx() as conn:
                    if conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "1":
                        migrate_v1(conn, self.root)
        except StoreError as exc:
            raise StoreError(f"{self.root} has store schema version 1 and must be migrated to version "
                             f"{SCHEMA_VERSION}, which needs the store to itself: {exc}") from None
        except (sqlite3.OperationalError, OSError) as exc:  # read-only file system, no permission
            raise StoreError(f"{self.root} has store schema version 1 and could not be migrated to version "
                             f"{SCHEMA_VERSION} ({exc}); make the store writable and run the command again") from None
        log.info("migrated %s to store schema version %s", self.root, SCHEMA_VERSION)

    # -- connections ------------------------------------------------------------------
    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """A damaged database file becomes a StoreError that says how to rebuild it."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if is_damaged(exc):
                raise StoreError(damaged_message(self.root, exc)) from None
            raise

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, timeout=60.0, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 60000")
        conn.row_factory = sqlite3.Row
        return conn

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; IMMEDIATE takes the write lock up front so two writers
        queue on the busy timeout instead of failing half-way with 'database is locked'."""
        with self._guard():
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
        with self._guard():
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
        """The run's own directory: result.json, checkpoint.pt, log.txt."""
        return self.root / "runs" / run_id

    def outcome(self, row: RunRow) -> Outcome:
        """The run's outcome: its status checked against its result.json (see :mod:`.outcomes`)."""
        return outcome_of(self.run_dir(row.run_id), row.run_id, row.status, row.error, row.traceback)

    # -- writes -------------------------------------------------------------------------
    def add_runs(self, runs: list[tuple[str, int, list[dict[str, Any]]]]) -> int:
        """Insert (run_id, seed, conditions) rows not yet present; returns how many were
        new. Existing rows keep their status; their cells (conditions) are updated."""
        added = 0
        with self._tx() as conn:
            for rid, seed, conditions in runs:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO runs (run_id, seed, status, added, conditions) VALUES (?, ?, 'queued', ?, ?)",
                    (rid, seed, now_iso(), json.dumps(conditions)),
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
                "finished = NULL, worker = ?, error = NULL, traceback = NULL WHERE run_id = ?",
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
        wall_s: Optional[float] = None,
        worker: Optional[str] = None,
        reused_from: Optional[str] = None,
    ) -> None:
        """Record that an attempt ended (status 'done' or 'failed').

        The outcome itself is the run's result.json; give `error` (and `traceback`)
        only for a run whose job ended without writing one.
        """
        if status not in ("done", "failed"):
            raise ValueError(f"status: a finished run is 'done' or 'failed', got {status!r}")
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE runs SET status = ?, error = ?, traceback = ?, "
                "finished = ?, wall_s = ?, worker = COALESCE(?, worker), reused_from = ? WHERE run_id = ?",
                (status, error, traceback, now_iso(), wall_s, worker, reused_from, run_id),
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
        """The run's row, or None if the store does not have it."""
        with self._read() as conn:
            r = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return _decode(r) if r else None

    def counts(self, run_ids: Optional[list[str]] = None) -> dict[str, int]:
        """How many runs (all, or those among `run_ids`) the store has in each status."""
        counts = {s: 0 for s in STATUSES}
        for r in self.rows(run_ids):
            counts[r.status] += 1
        return counts

    def integrity_ok(self) -> bool:
        """SQLite's own integrity check of the database file."""
        with self._read() as conn:
            return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# -- what analysis reads ----------------------------------------------------------------


def load_store_results(store_dir: str | Path, status: Optional[str] = "done") -> list[dict[str, Any]]:
    """Every run of a store as a dict: its result.json merged with the store's record.

    Keys: everything in result.json (config, test_acc, best_val_acc, history, timing,
    env, ...) plus ``run_id``, ``seed``, ``status``, ``attempts``, ``factors`` (factor
    name -> level for the spec's factors; a run that stands for several cells has the
    differing levels joined by '|', e.g. ``"standard|low"``), ``conditions`` (the list
    of cells it stands for), ``reused_from`` and ``result_path``; failed and missing
    runs have ``error``.

    A run the store records as done but whose result.json is missing, cut short or of
    another run has status ``"missing"`` (never "done": its numbers are not counted),
    and a warning naming it is logged; the next ``cffaudit sweep`` trains it again.

    Args:
        store_dir: the directory given to ``cffaudit sweep --store``.
        status: only runs with this status ("done" by default); None for all runs.
    """
    from cffaudit.experiments.spec import merged_levels

    store = RunStore.open_existing(store_dir)
    out = []
    for row in store.rows():
        outcome = store.outcome(row)
        if outcome.status == MISSING:
            log.warning("warning: run %s is recorded done in %s, but %s: %s", row.run_id, store.root,
                        outcome.error, MISSING_CONSEQUENCE)
        if status is not None and outcome.status != status:
            continue
        path = store.run_dir(row.run_id) / RESULT_NAME
        record: dict[str, Any] = dict(outcome.result or {})
        record.update(
            run_id=row.run_id,
            seed=row.seed,
            status=outcome.status,
            attempts=row.attempts,
            factors=merged_levels(row.conditions),
            conditions=row.conditions,
            reused_from=row.reused_from,
            result_path=str(path),
        )
        if outcome.status == MISSING:
            record.update(error=f"{outcome.error}: {MISSING_CONSEQUENCE}")
        elif outcome.error is not None:
            record.update(error=outcome.error, traceback=outcome.traceback)
        out.append(record)
    return out


def store_factors(store_dir: str | Path) -> list[str]:
    """The factor names of the store's spec, in spec order (e.g. ['margin', 'stability'])."""
    return RunStore.open_existing(store_dir).factors()


# -- helpers ------------------------------------------------------------------------


def _decode(r: sqlite3.Row) -> RunRow:
    d = dict(r)
    d["conditions"] = json.loads(d["conditions"])
    return RunRow(**d)
