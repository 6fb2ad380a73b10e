"""Loading runs from tidy CSVs, result.json files, directories and run stores."""


import pytest

from cffaudit.paperdata import per_seed_accuracy
from cffaudit.report.runs import RunLoadError, flatten_result, load_run_histories, load_runs

from tests.report.fake_runs import result_doc, write_store

ACCS = {("clamp", "detach"): [78.5, 77.0, 80.1], ("subtract", "detach"): [78.8, 79.3, 78.9]}


def test_tidy_csv_keeps_every_run(tmp_path):
    path = tmp_path / "runs.csv"
    per_seed_accuracy().to_csv(path, index=False)
    frame = load_runs([path])
    assert len(frame) == 109 and set(frame.status) == {"done"}
    fm = frame[frame.dataset == "fashion_mnist"]
    assert fm.stability.isna().all()  # empty stability = not applicable
    assert frame.run_id.is_unique


def test_flatten_result_maps_the_schema():
    row = flatten_result(result_doc("r1", "clamp", "direct", 3, 78.4), "x/result.json")
    assert (row["dataset"], row["margin"], row["stability"], row["margin_schedule"], row["augmentation"]) == (
        "cifar10", "clamp", "direct", "standard", "cifar")
    assert (row["seed"], row["test_acc"], row["status"], row["run_id"]) == (3, 78.4, "done", "r1")
    # Final stage-1 epoch (epoch 1): car = 0.5 + 0.1 - 0.05 k + 0.1, kept as a fraction.
    assert row["car_l0"] == pytest.approx(0.7) and row["car_l2"] == pytest.approx(0.6)
    assert row["grad_norm_l2"] == pytest.approx(4.0)
    assert row["cfg.model.embed_dim"] == 128
    assert "cfg.data.root" not in row and "cfg.seed" not in row and "cfg.loss.margin" not in row


def test_flatten_rejects_a_document_that_is_not_a_result():
    with pytest.raises(RunLoadError, match="not a cffaudit result.json"):
        flatten_result({"hello": 1}, "bad.json")


def test_directory_is_searched_recursively_and_failed_runs_are_kept(tmp_path):
    write_store(tmp_path / "sweep", ACCS, failed=2)
    frame = load_runs([tmp_path / "sweep"])
    assert len(frame) == 8
    assert (frame.status == "failed").sum() == 2
    assert frame.loc[frame.status == "failed", "test_acc"].isna().all()


def test_store_option_and_duplicates(tmp_path):
    store = write_store(tmp_path / "store", ACCS)
    one_file = next((store / "runs").rglob("result.json"))
    frame = load_runs([one_file], store=store)
    assert len(frame) == 6  # the file given twice (directly and through the store) counts once


def test_histories_are_long_records(tmp_path):
    store = write_store(tmp_path / "store", ACCS)
    hist = load_run_histories([], store=store)
    assert len(hist) == 6 * 2 * 3  # runs x epochs x layers
    assert set(hist.columns) >= {"run_id", "epoch", "layer", "car", "grad_norm", "margin", "seed"}


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.csv", "no such file"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "no result.json"),
        (lambda p: (p / "bad.csv").write_text("a,b\n1,2\n") and p / "bad.csv", "lacks column"),
        (lambda p: (p / "result.json").write_text("{not json") and p / "result.json", "cannot read JSON"),
    ],
)
def test_unreadable_inputs_raise(tmp_path, make, message):
    with pytest.raises(RunLoadError, match=message):
        load_runs([make(tmp_path)])


def test_no_inputs_raise():
    with pytest.raises(RunLoadError, match="no runs"):
        load_runs([])


def test_runs_and_histories_come_from_one_read_of_each_result(tmp_path, monkeypatch):
    from cffaudit.report import runs

    store = write_store(tmp_path / "store", ACCS)
    files = sorted((store / "runs").rglob("result.json"))
    reads = []
    real = runs._read_json
    monkeypatch.setattr(runs, "_read_json", lambda p: reads.append(p) or real(p))
    frame, hist = runs.load_runs_with_histories(files + [files[0]])  # one file named twice
    assert len(frame) == 6 and len(hist) == 6 * 2 * 3
    assert sorted(reads) == files  # each once


@pytest.mark.parametrize(
    "name, column",
    [("augmentation", "augmentation"), ("augment", "augmentation"), ("data.augment", "augmentation"),
     ("margin", "margin"), ("loss.margin", "margin"), ("loss.margin_schedule", "margin_schedule"),
     ("dataset", "dataset"), ("data.dataset", "dataset"), ("stability", "stability"),
     ("m0", "m0"), ("experiment", "experiment"), ("locality", "locality"), ("stage1.locality", "locality")],
)
def test_column_of_every_spelling_of_a_factor(name, column):
    from cffaudit.report.runs import column_of

    assert column_of(name) == column


def test_store_other_factor(tmp_path):
    from cffaudit.report.runs import store_other_factor

    assert store_other_factor(tmp_path, "margin") is None  # no sweep database
    (tmp_path / "store.sqlite").write_bytes(b"not a database")
    assert store_other_factor(tmp_path, "margin") is None  # unreadable: loading the runs says why


def test_paper_runs_are_finished_runs_with_ids():
    from cffaudit.report.runs import paper_runs

    frame = paper_runs()
    assert len(frame) == len(per_seed_accuracy()) and (frame["status"] == "done").all()
    assert frame["run_id"].is_unique and frame["run_id"].iloc[0] == "paper:0"


def test_results_stored_before_the_loss_fields_were_added_are_one_design_with_newer_ones():
    old = flatten_result(result_doc("r1", "clamp", "direct", 1, 78.0))
    new_doc = result_doc("r2", "clamp", "direct", 2, 79.0)
    new_doc["config"]["loss"].update({"margin_shape": "linear", "margin_k": 1.0, "link": "standard"})
    new = flatten_result(new_doc)
    keys = [k for k in new if k.startswith("cfg.loss.")]
    assert "cfg.loss.link" in keys and "cfg.loss.weince.q" in keys
    assert all(old[k] == new[k] for k in keys)
    weince_doc = result_doc("r3", "clamp", "direct", 3, 79.0)
    weince_doc["config"]["loss"]["link"] = "weince"
    assert flatten_result(weince_doc)["cfg.loss.link"] == "weince"


def test_locality_is_a_factor_column_and_old_results_were_local():
    old = flatten_result(result_doc("r1", "clamp", "detach", 1, 78.0))
    assert old["locality"] == "local"  # stored before stage1.locality existed
    doc = result_doc("r2", "clamp", "detach", 1, 70.0)
    doc["config"].setdefault("stage1", {})["locality"] = "last"
    row = flatten_result(doc)
    assert row["locality"] == "last" and not any(k.startswith("cfg.stage1.locality") for k in row)
