"""What a reader sees: the report's header names its inputs, every panel and forest entry
names its condition, legends hide no curve, epochs are whole numbers, no warning is
printed, and a run given twice is refused."""

import json

import numpy as np
import pytest

from cffaudit.cli import main
from cffaudit.experiments.spec import ExperimentSpec
from cffaudit.experiments.sweep import run_sweep
from cffaudit.paperdata import per_seed_accuracy
from cffaudit.report import plots
from cffaudit.report.analysis import analyze_runs
from cffaudit.report.build import design_names, forest_entries, panel_title
from cffaudit.report.runs import load_run_histories
from tests.experiments.fakes import fake_train_seeds
from tests.report.fake_runs import result_doc

SPEC = {"name": "margins", "base": {"data": {"dataset": "synthetic"}, "model": {"embed_dim": 16, "depth": 2, "heads": 2},
        "device": "cpu"}, "factors": {"margin": ["clamp", "subtract"]}, "seeds": "1-4"}


@pytest.fixture
def store(tmp_path):
    """A sweep store whose results, like those `cffaudit sweep` writes, carry no run id,
    each with three stage-1 epochs of per-layer CAR."""
    path = tmp_path / "margins.yaml"
    path.write_text(json.dumps(SPEC))
    root = tmp_path / "store"
    run_sweep(ExperimentSpec.load(path), root, train_fn=fake_train_seeds, progress=False, say=lambda s: None)
    for f in (root / "runs").glob("*/result.json"):
        doc = json.loads(f.read_text())
        assert "run_id" not in doc
        doc["history"] = result_doc("x", doc["config"]["loss"]["margin"], "detach", doc["config"]["seed"],
                                    doc["test_acc"], epochs=3)["history"]
        f.write_text(json.dumps(doc))
    return root


@pytest.mark.filterwarnings("error::UserWarning")  # matplotlib's warnings (no labelled artists) fail
@pytest.mark.parametrize("how", ["store", "folder"])
def test_report_names_its_inputs_and_warns_of_nothing(store, tmp_path, how):
    args = ["--store", str(store)] if how == "store" else [str(store / "runs")]
    assert main(["report", *args, "--resamples", "100", "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    head = md.splitlines()[2]
    expected = f"Inputs: store {store} (8 runs)" if how == "store" else f"Inputs: {store / 'runs'} (8 runs)"
    assert head.startswith(expected + ". cffaudit"), head
    assert (tmp_path / "rep" / "figures" / "car_over_epochs.png").exists()


def test_inputs_line_names_paths_and_store(store, tmp_path, capsys):
    assert main(["analyze", str(store / "runs"), "--store", str(store), "--json", str(tmp_path / "a.json")]) == 0
    doc = json.loads((tmp_path / "a.json").read_text())
    from cffaudit.report.build import inputs_line

    class A:
        inputs, runs_total = doc["inputs"], doc["runs"]["total"]

    # the folder inside the store and the store are the same 8 runs, counted once
    assert inputs_line(A.inputs, A.runs_total) == f"Inputs: {store / 'runs'} and store {store} (8 runs)"


def test_car_over_epochs_draws_every_run_read_from_a_folder_on_whole_epochs(store):
    history = load_run_histories([store / "runs"])
    assert history["run_id"].isna().all()  # as sweep writes them: the file tells runs apart
    fig = plots.car_over_epochs(history)
    plots.to_png(fig)
    for ax in fig.axes:
        assert len(ax.get_lines()) == 8
        assert all(float(t).is_integer() for t in ax.get_xticks()), ax.get_xticks()
        assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["clamp", "subtract"]


def test_power_curve_legend_sits_below_the_axes_and_marks_are_legible():
    fig = plots.power_curve(observed=[("stability=detach", 2.5), ("stability=direct", 0.3)],
                            marks=[("n=5 used", 5), ("n=7 used", 7)])
    plots.to_png(fig)  # lays the figure out
    ax = fig.axes[0]
    renderer = fig._get_renderer()  # the Agg renderer the PNG was drawn with
    legend, frame = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
    assert legend.y1 < frame.y0  # below the axes: no curve behind it
    texts = [t for t in ax.texts if t.get_text().startswith("n=")]
    assert len(texts) == 2 and all(t.get_fontsize() >= 9 for t in texts)
    a, b = (t.get_window_extent(renderer) for t in texts)
    assert not a.overlaps(b) and min(a.y0, b.y0) > frame.y1  # above the axes, apart


def test_legend_is_drawn_only_with_labelled_artists():
    from matplotlib.figure import Figure

    ax = Figure().add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1])
    plots._legend(ax)
    assert ax.get_legend() is None
    ax.plot([0, 1], [1, 0], label="clamp")
    plots._legend(ax)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["clamp"]


def test_panels_and_forest_entries_name_their_conditions():
    frame = per_seed_accuracy().assign(status="done", run_id=lambda f: [str(i) for i in range(len(f))], source="p")
    analysis = analyze_runs(frame, factor="stability", n_resamples=100)
    titles = [panel_title(d) for d in analysis.designs]
    assert "dataset=svhn, experiment=difficulty_sweep, margin_schedule=standard, augmentation=hard" in titles
    common, names = design_names(analysis)
    assert common == ""  # every column varies over the paper's designs
    labels = [e[0] for e in forest_entries(analysis)]
    assert len(labels) == len(set(labels)) and all(lab.startswith("dataset=") for lab in labels)
    assert any("| stability=detach (n=" in lab for lab in labels)
    one = analyze_runs(frame[frame.dataset == "cifar100"], factor="stability", n_resamples=100)
    common, names = design_names(one)
    assert common == "dataset=cifar100, experiment=factorial, margin_schedule=standard, augmentation=standard"
    assert [e[0].split(" (n=")[0] for e in forest_entries(one)] == ["stability=detach", "stability=direct"]


def test_forest_plot_draws_no_bar_for_an_interval_not_computed():
    fig = plots.forest_plot([("a", 2.0, float("nan"), float("nan")), ("b", 0.5, 0.2, 1.5)])
    ax = fig.axes[0]
    bars = [line for line in ax.get_lines() if len(line.get_xdata()) == 2 and line.get_linestyle() == "-"
            and np.ptp(line.get_ydata()) == 0 and line.get_xdata()[0] != line.get_xdata()[1]]
    assert len(bars) == 1 and list(bars[0].get_xdata()) == [0.2, 1.5]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b", "a: no interval"]
    lo, hi = ax.get_xlim()
    assert lo < 1.0 < hi  # the line of equal variances is always in view


def test_a_copy_of_the_store_runs_beside_the_store_is_refused(store, tmp_path, capsys):
    import shutil

    shutil.copytree(store / "runs", tmp_path / "copy")
    rc = main(["report", str(tmp_path / "copy"), "--store", str(store), "--out", str(tmp_path / "rep")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "is given twice" in err and str(tmp_path / "copy") in err and str(store / "runs") in err
    assert "give each run once" in err
