"""Kill a training process for real, once it has written its first checkpoint, and resume it."""

import json
import signal
import subprocess
import sys
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


def small_train_command(out: Path, *flags: str) -> list[str]:
    """`cffaudit train` of a small synthetic run (8 stage-1 epochs unless `flags` say otherwise)."""
    return [sys.executable, "-m", "cffaudit.cli", "train", "--dataset", "synthetic", "--synthetic-train", "3000",
            "--synthetic-test", "200", "--embed-dim", "16", "--depth", "2", "--heads", "2", "--patch-size", "8",
            "--epochs-stage1", "8", "--epochs-stage2", "3", "--batch-size", "100", "--no-progress",
            "--out", str(out), *flags]


def uninterrupted_and_resumed(tmp_path: Path, *flags: str, env=None, timeout: float = 120,
                              grace: float = 0.3) -> tuple[dict, dict]:
    """Train once straight through and once killed after its first checkpoint, then
    resumed with --resume; return both result.json documents."""
    full = subprocess.run(small_train_command(tmp_path / "full", *flags), env=env, capture_output=True, text=True)
    assert full.returncode == 0, full.stderr
    killed = tmp_path / "killed"
    kill_after_first_checkpoint(small_train_command(killed, *flags), killed / "checkpoint.pt", env=env,
                                timeout=timeout, grace=grace)
    assert not (killed / "result.json").exists()
    resumed = subprocess.run(small_train_command(killed, *flags, "--resume"), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    return (json.loads((tmp_path / "full" / "result.json").read_text()),
            json.loads((killed / "result.json").read_text()))
