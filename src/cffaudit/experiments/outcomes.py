"""A run's outcome, read from the one place it is kept: its ``result.json``.

The store's SQLite file holds the queue (status, attempts, owner, timings, levels);
what a run achieved lives only in ``runs/<run_id>/result.json``, written atomically by
the worker. A run the store calls done but whose result file is missing, cut short or
of another run is *missing*: it is never counted, and the next sweep trains it again.
Nothing here imports torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from cffaudit.config import RESULT_NAME, RunConfig
from cffaudit.experiments.identity import result_protocol
from cffaudit.experiments.identity import run_id as compute_run_id

#: The status of a run that the store records as done but whose result.json cannot
#: be used; it is reported, never counted, and trained again by the next sweep.
MISSING = "missing"


#: What happens to a missing run, for messages about one.
MISSING_CONSEQUENCE = "not counted; the next `cffaudit sweep` trains it again (from its checkpoint when there is one)"


@dataclass(frozen=True)
class Outcome:
    """What is known of one run: the store's status, checked against its result file.

    Attributes:
        status: queued, running, done, failed, or ``MISSING`` (done in the store,
            but its result.json is missing or unusable).
        result: the parsed result.json of a done run, or of a failed run whose
            result records the failure (None otherwise).
        error: why the run failed, or what is wrong with a missing run's result file.
        traceback: the failed attempt's traceback, when one was recorded.
    """

    status: str
    result: Optional[dict[str, Any]] = None
    error: Optional[str] = None
    traceback: Optional[str] = None

    @property
    def test_acc(self) -> Optional[float]:
        return float_or_none((self.result or {}).get("test_acc"))

    @property
    def best_val_acc(self) -> Optional[float]:
        return float_or_none((self.result or {}).get("best_val_acc"))


def read_result(path: Path) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """The JSON object at `path`, or None and what is wrong with the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, "is missing"
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot be read ({exc})"
    try:
        result = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"is not valid JSON ({exc}; cut short?)"
    if not isinstance(result, dict):
        return None, f"holds a JSON {type(result).__name__}, not a result object"
    return result, None


def finished_problem(result: dict[str, Any], run_id: str) -> Optional[str]:
    """Why `result` is not a finished ('done') result of run `run_id`; None if it is."""
    if result.get("status") != "done":
        return f"has status {result.get('status')!r}, not 'done'"
    if float_or_none(result.get("test_acc")) is None:
        return "has no numeric test_acc"
    try:
        # Under the protocol it was trained with: a store made before protocol 2 keeps
        # its ids, and its results stay readable (a new sweep of it is another design).
        same = compute_run_id(RunConfig.from_dict(result.get("config") or {}), result_protocol(result)) == run_id
    except ValueError:
        same = False
    return None if same else "belongs to another run (its config does not give this run id)"


def finished_result(result_path: Path, run_id: str) -> Optional[dict[str, Any]]:
    """The result at `result_path` if it is a finished ('done') result of run `run_id`."""
    result, _ = read_result(result_path)
    if result is None or finished_problem(result, run_id):
        return None
    return result


def outcome_of(run_dir: Path, run_id: str, status: str, error: Optional[str] = None,
               traceback: Optional[str] = None) -> Outcome:
    """The outcome of a run the store records with `status` (and, for a job that never
    completed, the `error` and `traceback` kept in the store)."""
    path = run_dir / RESULT_NAME
    if status == "done":
        result, problem = read_result(path)
        if result is not None:
            problem = finished_problem(result, run_id)
        if problem is None:
            return Outcome("done", result=result)
        return Outcome(MISSING, error=f"{path} {problem}")
    if status == "failed":
        if error:  # the job never completed, so its runs wrote no result of this attempt
            return Outcome("failed", error=error, traceback=traceback)
        result, problem = read_result(path)
        if result is not None and result.get("status") == "failed":
            return Outcome("failed", result=result, error=result.get("error"), traceback=result.get("traceback"))
        return Outcome("failed", error=f"failed, but {path} " + (problem or "does not record the failure"))
    return Outcome(status)


def float_or_none(v: Any) -> Optional[float]:
    """`v` as a float if it is a real number (not a bool), else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)
