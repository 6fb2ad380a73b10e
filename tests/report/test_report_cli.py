"""The analyze / report / paper commands through the real CLI entry point."""

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cffaudit.cli import main
from cffaudit.paperdata import per_seed_accuracy
from cffaudit.report.document import ReportDocument, markdown_to_html

from tests.report.fake_runs import write_store

ACCS = {
    ("clamp", "detach"): [78.5, 77.0, 80.1, 78.0],
    ("clamp", "direct"): [78.1, 76.2, 79.4, 79.0],
    ("subtract", "detach"): [78.8, 79.3, 78.9, 79.0],
    ("subtract", "direct"): [78.3, 78.3, 78.7, 78.2],
}


@pytest.fixture()
def csv_path(tmp_path):
    path = tmp_path / "runs.csv"
    per_seed_accuracy().to_csv(path, index=False)
    return path


def test_analyze_prints_tables_and_writes_json(csv_path, tmp_path, capsys):
    out = tmp_path / "a.json"
    rc = main(["analyze", str(csv_path), "--where", "dataset=cifar10", "--where", "experiment=factorial",
               "--factor", "stability", "--pool", "--resamples", "300", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "clamp vs subtract (pooled over stability)" in text and "| 14 / 14 |" in text
    doc = json.loads(out.read_text())
    assert doc["schema"] == "cffaudit.analysis/1" and len(doc["designs"]) == 1
    assert doc["designs"][0]["audit"]["comparisons"][0]["variance_ratio"]["statistic"] == pytest.approx(5.89996, rel=1e-5)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["analyze"], "give at least one INPUT"),
        (["analyze", "{csv}", "--compare", "loss"], "compare: unknown factor"),
        (["analyze", "{csv}", "--levels", "clamp"], "--levels: expected two"),
        (["analyze", "{csv}", "--levels", "clamp,none"], "levels: unknown level"),
        (["analyze", "{csv}", "--where", "datset=x"], "where: unknown column"),
        (["analyze", "{csv}", "--where", "dataset=mnist"], "no finished runs"),
        (["analyze", "/nonexistent/x.csv"], "no such file"),
    ],
)
def test_user_errors_exit_2_with_one_line(csv_path, capsys, argv, message):
    rc = main([a.replace("{csv}", str(csv_path)) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1


def test_report_from_result_json_store(tmp_path, capsys):
    store = write_store(tmp_path / "store", ACCS, failed=1)
    out = tmp_path / "rep"
    rc = main(["report", "--store", str(store), "--factor", "stability", "--resamples", "200", "--out", str(out)])
    assert rc == 0
    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    names = {p.stem for p in (out / "figures").glob("*.png")}
    assert names == {"per_seed_accuracy", "variance_ratio_forest", "power_curve", "layer_profiles", "car_over_epochs"}
    # Self-contained: every figure embedded as a PNG data URI, no external references.
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(uris) == 5 and all(base64.b64decode(u)[:8] == b"\x89PNG\r\n\x1a\n" for u in uris)
    assert not re.search(r'(src|href)="(?!data:)', html)
    assert "1 failed (excluded)" in md and "figures/layer_profiles.png" in md


def test_paper_command_json_and_report(tmp_path, capsys):
    out = tmp_path / "paper.json"
    rc = main(["paper", "--resamples", "300", "--json", str(out), "--out", str(tmp_path / "p")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "Table 4. CIFAR-10 factorial variance tests" in text
    doc = json.loads(out.read_text())
    assert doc["schema"] == "cffaudit.paper/1" and doc["n_resamples"] == 300
    row = next(v for v in doc["values"] if (v["table"], v["row"], v["column"]) == ("6", "standard", "f_pvalue"))
    assert row["reported"] == "0.003" and row["status"] == "reproduces"
    assert set(row) >= {"table", "row", "column", "reported", "reproduced", "method", "status", "alternatives", "note"}
    assert (tmp_path / "p" / "paper.html").exists() and (tmp_path / "p" / "figures" / "paper_car_by_layer.png").exists()


def test_markdown_to_html_subset():
    html = markdown_to_html("## A <b>\n\ntext `x`\nmore\n\n| a | b |\n|:--|--:|\n| 1 | 2 |\n\n- one\n- two\n")
    assert "<h2>A &lt;b&gt;</h2>" in html and "<p>text <code>x</code> more</p>" in html
    assert '<td class="num">2</td>' in html and "<ul><li>one</li><li>two</li></ul>" in html
    with pytest.raises(ValueError, match="^name:"):
        ReportDocument("t").add_figure("../x", b"", "c")


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="headless Chromium not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(tmp_path):
    store = write_store(tmp_path / "store", ACCS)
    assert main(["report", "--store", str(store), "--resamples", "100", "--out", str(tmp_path / "rep")]) == 0
    script = Path(__file__).resolve().parents[2] / "scripts" / "check_report_render.py"
    res = subprocess.run([sys.executable, str(script), str(tmp_path / "rep" / "report.html"), "--screenshot",
                          str(tmp_path / "shot.png")], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "images loaded: 5/5" in res.stdout
