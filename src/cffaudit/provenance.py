"""Where a result came from: package version, git revision, library versions, device.

Imports nothing heavy at module level, so `cffaudit.stats` and the report can use it.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from cffaudit import __version__


def git_revision() -> str | None:
    """The git revision of the cffaudit source tree, with '+dirty' if it has changes."""
    root = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        )
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, timeout=5,
        )
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: Any = None) -> dict[str, Any]:
    """Versions and hardware, for every result and benchmark."""
    env: dict[str, Any] = {
        "package": "cffaudit",
        "version": __version__,
        "git_revision": git_revision(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    if "torch" in sys.modules or device is not None:
        import torch

        env["torch"] = torch.__version__
        env["cpu_threads"] = torch.get_num_threads()
        if device is not None:
            dev = torch.device(device)
            env["device"] = str(dev)
            if dev.type == "cuda":
                env["device_name"] = torch.cuda.get_device_name(dev)
                env["cuda"] = torch.version.cuda
            else:
                env["device_name"] = platform.processor() or platform.machine()
    try:
        import numpy

        env["numpy"] = numpy.__version__
    except ImportError:  # pragma: no cover - numpy is a hard dependency
        pass
    return env
