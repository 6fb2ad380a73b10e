"""What a sweep settles before it trains: runs that finished unrecorded, runs recorded
done whose result is gone, and finished runs another store can lend.

The driver calls these under the store's lock, so no worker of this store is alive.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Sequence

from cffaudit.atomic import atomic_write_json
from cffaudit.config import CHECKPOINT_NAME, RESULT_NAME
from cffaudit.experiments.outcomes import MISSING, finished_result
from cffaudit.experiments.store import RunStore
from cffaudit.experiments.worker import LOG_NAME


def requeue_missing(store: RunStore, run_ids: Sequence[str]) -> list[tuple[str, str]]:
    """Queue again the runs recorded done whose result.json is missing or unusable
    (their checkpoints stay, so they resume); returns (run_id, what was wrong)."""
    missing = []
    for row in store.rows(list(run_ids)):
        if row.status == "done":
            outcome = store.outcome(row)
            if outcome.status == MISSING:
                missing.append((row.run_id, outcome.error or ""))
    if missing:
        store.requeue("done", [rid for rid, _ in missing])
    return missing


def recover_finished(store: RunStore, run_id: str) -> bool:
    """Record a run whose worker finished (result.json done) but whose driver died
    before recording it, instead of training it again."""
    if finished_result(store.run_dir(run_id) / RESULT_NAME, run_id) is None:
        return False
    store.finish(run_id, status="done")
    return True


def import_reused(store: RunStore, run_id: str, reuse_dirs: Sequence[Path]) -> bool:
    """Copy a finished run with the same id from another store (result, log, checkpoint)."""
    for other in reuse_dirs:
        src = other / "runs" / run_id
        result = finished_result(src / RESULT_NAME, run_id)
        if result is None:
            continue
        dst = store.run_dir(run_id)
        dst.mkdir(parents=True, exist_ok=True)
        for name in (LOG_NAME, CHECKPOINT_NAME):
            if (src / name).exists():
                _link_or_copy(src / name, dst / name)
        atomic_write_json(dst / RESULT_NAME, result)  # last: its presence means complete
        store.finish(run_id, status="done", reused_from=str(other))
        return True
    return False


def reusable_runs(run_ids: Sequence[str], reuse_dir: Path) -> list[str]:
    """Those of `run_ids` that the store at `reuse_dir` has finished (for a dry run)."""
    return [rid for rid in run_ids if finished_result(reuse_dir / "runs" / rid / RESULT_NAME, rid)]


def _link_or_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(src, tmp)  # checkpoints are large and never modified once done
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)
