"""`analyze --decompose` and `report`'s "Sources of variance" through the CLI entry point."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cffaudit.cli import main
from tests.report.fake_sources import write_sources_runs


@pytest.fixture()
def runs(tmp_path):
    return write_sources_runs(tmp_path / "store")


def test_analyze_decompose_prints_components_and_writes_json(runs, tmp_path, capsys):
    out = tmp_path / "a.json"
    rc = main(["analyze", str(runs), "--decompose", "seed/probe_seed", "--resamples", "200", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "## Sources of variance" in text and "design `seed/probe_seed` (nested)" in text
    assert "probe_seed within seed" in text and "clamp / subtract" in text
    assert "Per-seed mechanism" in text and "car_l0_final" in text
    doc = json.loads(out.read_text())
    (d,) = doc["sources"]["decompositions"]
    assert [c["condition"] for c in d["conditions"]] == ["clamp", "subtract"]
    assert doc["sources"]["mechanism"]["correlations"]


def test_analyze_decompose_crossed_and_repeated(tmp_path, capsys):
    runs = write_sources_runs(tmp_path / "store", crossed=True, probes=2, predictions=False)
    rc = main(["analyze", str(runs), "--decompose", "seed_init*seed_data", "--decompose", "seed/probe_seed",
               "--resamples", "100"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "design `seed_init*seed_data` (crossed)" in text and "design `seed/probe_seed` (nested)" in text


def test_analyze_of_a_csv_notes_what_it_skips(tmp_path, capsys):
    from cffaudit.paperdata import per_seed_accuracy

    csv = tmp_path / "runs.csv"
    per_seed_accuracy().to_csv(csv, index=False)
    rc = main(["analyze", str(csv), "--where", "dataset=cifar10", "--where", "experiment=factorial",
               "--factor", "stability", "--pool", "--resamples", "100"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "per-seed mechanism: skipped" in text and "test-set floor: skipped" in text


@pytest.mark.parametrize("spec, message", [
    ("seed/probe_sed", "--decompose: spec: "),  # did-you-mean on the column
    ("dataset/seed", "has one level"),
    ("seed/run_id", "no replication"),
    ("seed", "is not 'A/B'"),
])
def test_bad_decompose_exits_2_with_one_line(runs, capsys, spec, message):
    rc = main(["analyze", str(runs), "--decompose", spec, "--resamples", "50"])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1


def test_reml_that_does_not_converge_exits_2(tmp_path, capsys, monkeypatch):
    import cffaudit.stats.components as comp

    runs = write_sources_runs(tmp_path / "store", seeds=5, probes=3, predictions=False)
    doc_path = next((runs / "runs").glob("clamp-s1/result.json"))
    doc = json.loads(doc_path.read_text())
    doc["probe_test_accs"] = doc["probe_test_accs"][:2]  # unbalanced: REML refits, no ANOVA shortcut
    doc_path.write_text(json.dumps(doc))
    monkeypatch.setattr(comp, "_fit_reml", lambda y, design, kind: (0.0, None, "MixedLM did not converge", "default"))
    rc = main(["analyze", str(runs), "--decompose", "seed/probe_seed", "--resamples", "50"])
    err = capsys.readouterr().err
    assert rc == 2 and "converge" in err and len(err.strip().splitlines()) == 1


def test_floor_labels_that_differ_exit_2(tmp_path, capsys):
    pytest.importorskip("cffaudit.predictions")
    runs = write_sources_runs(tmp_path / "store", seeds=4)
    other = write_sources_runs(tmp_path / "other", seeds=4, label_seed=3)
    victim = runs / "runs" / "clamp-s2" / "predictions.npz"
    victim.write_bytes((other / "runs" / "clamp-s2" / "predictions.npz").read_bytes())
    rc = main(["analyze", str(runs), "--resamples", "50"])
    err = capsys.readouterr().err
    assert rc == 2 and "other labels" in err


def test_report_has_a_sources_section_with_figures(runs, tmp_path, capsys):
    out = tmp_path / "rep"
    rc = main(["report", str(runs), "--out", str(out), "--resamples", "100"])
    assert rc == 0
    md = (out / "report.md").read_text()
    assert "## Sources of variance" in md and "'seed/probe_seed' by default" in md
    figures = {p.stem for p in (out / "figures").glob("*.png")}
    assert {"variance_components_1", "car_against_accuracy", "probe_spread"} <= figures
    html = (out / "report.html").read_text()
    assert "Sources of variance" in html


def test_tidy_csv_with_probe_columns_is_decomposed_and_reported(runs, tmp_path, capsys):
    from cffaudit.report.runs import load_runs

    frame = load_runs([runs])
    csv = tmp_path / "runs.csv"
    cols = ["dataset", "margin", "seed", "test_acc", "probe_test_accs", "car_l0_final", "stage1_gain"]
    frame.assign(probe_test_accs=[json.dumps(v) for v in frame["probe_test_accs"]])[cols].to_csv(csv, index=False)
    rc = main(["analyze", str(csv), "--decompose", "seed/probe_seed", "--resamples", "100"])
    text = capsys.readouterr().out
    assert rc == 0 and "probe_seed within seed" in text and "| clamp     | car_l0_final" in text
    out = tmp_path / "rep"
    assert main(["report", str(csv), "--out", str(out), "--resamples", "100"]) == 0
    assert {"variance_components_1", "probe_spread"} <= {p.stem for p in (out / "figures").glob("*.png")}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None and shutil.which("chromium-browser") is None,
                    reason="headless Chromium not installed (apt-get install chromium)")
def test_sources_report_renders_in_headless_chromium(runs, tmp_path):
    out = tmp_path / "rep"
    assert main(["report", str(runs), "--out", str(out), "--resamples", "100"]) == 0
    n = len(list((out / "figures").glob("*.png")))
    script = Path(__file__).resolve().parents[2] / "scripts" / "check_report_render.py"
    res = subprocess.run([sys.executable, str(script), str(out / "report.html"), "--screenshot",
                          str(tmp_path / "shot.png")], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"images loaded: {n}/{n}" in res.stdout
