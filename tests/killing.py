"""Kill a training process for real, once it has written its first checkpoint."""

import signal
import subprocess
import time
from pathlib import Path


def kill_after_first_checkpoint(cmd: list[str], checkpoint: Path, *, env=None, timeout: float = 120,
                                grace: float = 0.3) -> None:
    """Start `cmd`, SIGKILL it `grace` seconds after `checkpoint` appears, and check it died
    by the signal (not by finishing first)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert checkpoint.exists(), f"no checkpoint after {timeout} s (exit status {proc.poll()})"
    time.sleep(grace)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
