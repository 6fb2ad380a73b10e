"""TensorBoard logs of a run's per-epoch records (``--tensorboard DIR``).

One log directory per seed (``train``: ``DIR/seed-<k>``; ``sweep``: ``DIR/<run id>``),
each holding, per stage-1 epoch and layer l, every number of the layer's record under
``stage1_<name>/layer<l>`` (loss, CAR pooled and per-batch, gradient norms, validation
loss, a gated link's mean gate), per probe epoch ``probe/<name>`` (train loss, validation
and test accuracy), and the run's resolved config as text. The records are those of
``result.json``'s history: this only mirrors them, so a run logs the same with or
without it.

The writer is torch's, which needs the optional ``tensorboard`` package; it is imported
when a log is opened, and ``require_tensorboard`` lets a command fail before training.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any, Sequence

INSTALL_HINT = "pip install 'cffaudit[tensorboard]' (or: pip install tensorboard)"


def require_tensorboard() -> None:
    """Raise ``ImportError`` saying what to install when the tensorboard package (which
    torch's writer needs) is missing; cheap: imports neither torch nor tensorboard."""
    if importlib.util.find_spec("tensorboard") is None:
        raise ImportError(f"--tensorboard needs the tensorboard package, which is not installed; {INSTALL_HINT}")


class TensorBoardLog:
    """Writes the history entries of an ensemble's seeds to one log directory each.

    Args:
        log_dirs: one directory per seed.
        configs: per seed, its resolved config (written once as text).
        history: per seed, the history as it stands (a resumed run's earlier epochs
            were logged by the process that trained them, so they are skipped).
    """

    def __init__(self, log_dirs: Sequence[str | Path], configs: Sequence[dict[str, Any]],
                 history: Sequence[list[dict]]) -> None:
        if not (len(log_dirs) == len(configs) == len(history)):
            raise ValueError("log_dirs, configs and history: need one entry per seed each")
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.writers = [SummaryWriter(log_dir=str(d)) for d in log_dirs]
        self.written = [len(h) for h in history]
        for writer, cfg in zip(self.writers, configs):
            # Indented four spaces: TensorBoard renders text as Markdown, and this keeps it verbatim.
            text = "\n".join("    " + line for line in json.dumps(cfg, indent=2, sort_keys=True).splitlines())
            writer.add_text("config", text, global_step=0)
            writer.flush()

    def update(self, history: Sequence[list[dict]]) -> None:
        """Write every history entry not written yet, then flush (one call per epoch)."""
        for k, (writer, entries) in enumerate(zip(self.writers, history)):
            for entry in entries[self.written[k]:]:
                _write_entry(writer, entry)
            self.written[k] = len(entries)
            writer.flush()

    def close(self) -> None:
        """Flush and close every writer."""
        for writer in self.writers:
            writer.close()


def _write_entry(writer, entry: dict[str, Any]) -> None:
    epoch = int(entry["epoch"])
    if entry.get("stage") == 1:
        for rec in entry.get("layers") or []:
            for name, value in _numbers(rec, skip=("layer",)):
                writer.add_scalar(f"stage1_{name}/layer{rec['layer']}", value, global_step=epoch)
        for name, value in _numbers(entry, skip=("stage", "epoch")):
            writer.add_scalar(f"stage1/{name}", value, global_step=epoch)
    else:
        for name, value in _numbers(entry, skip=("stage", "epoch")):
            writer.add_scalar(f"probe/{name}", value, global_step=epoch)


def _numbers(record: dict[str, Any], skip: Sequence[str]) -> list[tuple[str, float]]:
    """The finite numbers of a record (None, NaN and nested values are not plotted)."""
    out = []
    for name, value in record.items():
        if name in skip or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out.append((name, float(value)))
    return out
