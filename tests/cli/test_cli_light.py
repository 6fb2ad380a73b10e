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


def test_no_library_module_imports_the_cli():
    """The commands depend on the library, never the other way round (no import cycle)."""
    import ast
    from pathlib import Path

    import cffaudit

    root = Path(cffaudit.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if rel.parts[0] == "cli" or rel.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{rel}: {n}" for n in names if n == "cffaudit.cli" or n.startswith("cffaudit.cli.")]
            if isinstance(node, ast.ImportFrom) and node.module == "cffaudit" and any(a.name == "cli" for a in node.names):
                offenders.append(f"{rel}: from cffaudit import cli")
    assert offenders == []
