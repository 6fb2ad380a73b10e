"""`python -m cffaudit` is the `cffaudit` command: the same output, one-line errors and exit statuses."""

import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import pytest

from cffaudit import __version__
from cffaudit.cli import main

PAPER_CSV = str(resources.files("cffaudit.paperdata") / "per_seed_test_accuracy.csv")
SCRIPT = Path(sys.executable).parent / "cffaudit"  # the console script of the environment, if installed


def _module(*argv: str, module: str = "cffaudit") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True, timeout=300)


def _in_process(capsys, *argv: str) -> tuple[int, str, str]:
    """What the `cffaudit` script does: exit with main's status (argparse exits by itself)."""
    try:
        rc = main(list(argv))
    except SystemExit as exc:
        rc = exc.code
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize(
    "argv",
    [
        ["analyze", "--no-such-flag"],  # argparse: usage and error, status 2
        ["analyze", "/nonexistent/runs.csv"],  # a user error: one line, status 2
        ["analyze", PAPER_CSV, "--levels", "clamp"],
        [],  # no command: the help, status 2
        ["--version"],
    ],
)
def test_python_m_cffaudit_behaves_like_the_command(capsys, argv):
    proc = _module(*argv)
    assert "Traceback" not in proc.stderr
    assert (proc.returncode, proc.stdout, proc.stderr) == _in_process(capsys, *argv)


def test_user_error_is_one_line_with_status_2():
    proc = _module("analyze", "/nonexistent/runs.csv")
    assert proc.returncode == 2
    assert proc.stderr == "cffaudit analyze: error: /nonexistent/runs.csv: no such file or directory\n"
    bad_flag = _module("analyze", "--no-such-flag")
    assert bad_flag.returncode == 2 and bad_flag.stderr.endswith("cffaudit analyze: error: unrecognized arguments: --no-such-flag\n")


def test_version():
    proc = _module("--version")
    assert proc.returncode == 0 and proc.stdout == f"cffaudit {__version__}\n"


def test_analyze_of_the_packaged_paper_data(capsys):
    argv = ["analyze", PAPER_CSV, "--where", "dataset=cifar10", "--where", "experiment=factorial",
            "--factor", "stability", "--pool", "--resamples", "200"]
    proc = _module(*argv)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("## Variance audit") and "| 14 / 14 |" in proc.stdout
    assert (proc.returncode, proc.stdout, proc.stderr) == _in_process(capsys, *argv)


def test_python_m_cffaudit_cli_still_gives_one_line_errors():
    # It used to print a traceback: its `except CLIError` did not match the class the commands raised.
    proc = _module("analyze", "/nonexistent/runs.csv", module="cffaudit.cli")
    assert proc.returncode == 2
    assert proc.stderr == "cffaudit analyze: error: /nonexistent/runs.csv: no such file or directory\n"


@pytest.mark.skipif(not SCRIPT.exists(), reason="no cffaudit console script next to this Python")
def test_the_console_script_gives_the_same_answers():
    for argv in (["--version"], ["analyze", "/nonexistent/runs.csv"], ["analyze", "--no-such-flag"]):
        script = subprocess.run([str(SCRIPT), *argv], capture_output=True, text=True, timeout=300)
        module = _module(*argv)
        assert (script.returncode, script.stdout, script.stderr) == (module.returncode, module.stdout, module.stderr)


@pytest.mark.slow
def test_ctrl_c_exits_130_with_one_line(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "cffaudit", "train", "--dataset", "synthetic", "--synthetic-train", "3000",
           "--synthetic-test", "200", "--embed-dim", "16", "--depth", "2", "--heads", "2", "--patch-size", "8",
           "--epochs-stage1", "200", "--epochs-stage2", "1", "--batch-size", "100", "--device", "cpu",
           "--no-progress", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)  # training has started once its first checkpoint is written
    assert proc.poll() is None, proc.communicate()[1]
    # One run of the full suite on 2026-12-03 (fresh clone, idle machine) saw the child
    # train on for 120 s after one SIGINT, which no rerun reproduced: CPython drops a
    # KeyboardInterrupt raised while a finalizer runs ("Exception ignored in ..."). A
    # user presses Ctrl-C again; so does the test, every 15 s, and then expects that report
    # before the one line.
    err = None
    for _ in range(8):
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=15)
            break
        except subprocess.TimeoutExpired:
            continue
    assert err is not None, "still training after 8 SIGINTs, 15 s apart"
    assert proc.returncode == 130
    assert err.endswith("cffaudit train: interrupted\n")
    assert err == "cffaudit train: interrupted\n" or "Exception ignored" in err, err
