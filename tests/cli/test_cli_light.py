import subprocess
import sys


def test_building_the_cli_imports_no_heavy_library():
    """`cffaudit --help` and the analysis commands must not wait for torch to load."""
    code = ("import sys; from cffaudit.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'pandas', 'matplotlib', 'ray', 'statsmodels') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_broken_pipe_is_not_a_traceback():
    proc = subprocess.run(f"{sys.executable} -m cffaudit.cli paper | head -1", shell=True,
                          capture_output=True, text=True)
    assert "Traceback" not in proc.stderr and proc.stdout.startswith("##")
