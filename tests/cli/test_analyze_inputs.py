"""Bad input fed through `cffaudit analyze`: refused before any statistic, with a message
that names the file, row and column, and exit status 2 (issue 10, item 8). Groups too
small to test stay in the tables; labels with a pipe keep the tables' columns."""

import json
import re
import shutil

import pandas as pd
import pytest

from cffaudit.cli import main
from cffaudit.paperdata import per_seed_accuracy

from tests.report.fake_runs import write_store


@pytest.fixture()
def cifar10():
    """The paper's CIFAR-10 factorial runs (28 rows; CSV rows 2-29)."""
    acc = per_seed_accuracy()
    return acc[(acc.dataset == "cifar10") & (acc.experiment == "factorial")].reset_index(drop=True)


def _analyze(capsys, *argv):
    rc = main(["analyze", *map(str, argv), "--resamples", "50"])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _refused(capsys, *argv):
    rc, out, err = _analyze(capsys, *argv)
    assert rc == 2 and out == "" and err.count("\n") == 1, (rc, out, err)
    assert "np.float64" not in err and "np.int64" not in err  # plain numbers
    return err


def test_duplicate_rows_in_one_csv_are_refused_naming_rows(tmp_path, capsys, cifar10):
    path = tmp_path / "runs.csv"
    pd.concat([cifar10, cifar10.iloc[[0]]]).to_csv(path, index=False)
    err = _refused(capsys, path, "--factor", "stability")
    assert "1 run(s) appear more than once" in err
    assert "margin=clamp, stability=detach, seed=1" in err
    assert f"{path} row 2, {path} row 30" in err and "remove the copies" in err


def test_duplicate_runs_across_csv_files_are_refused_naming_both_files(tmp_path, capsys, cifar10):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    cifar10.to_csv(a, index=False)
    cifar10.iloc[[3]].to_csv(b, index=False)
    err = _refused(capsys, a, b)
    assert f"row 5 of {a}, row 2 of {b}" in err and "seed=4" in err


def test_a_result_json_given_twice_under_two_names_is_refused(tmp_path, capsys):
    store = write_store(tmp_path / "s", {("clamp", "detach"): [78.5, 77.0, 80.1], ("subtract", "detach"): [78.8, 79.3, 78.9]})
    shutil.copytree(store / "runs" / "clamp-detach-s2", store / "runs" / "clamp-detach-s2-copy")
    err = _refused(capsys, store)
    assert "clamp-detach-s2/result.json" in err and "clamp-detach-s2-copy/result.json" in err
    assert "seed=2" in err


def test_accuracy_above_100_is_refused_naming_file_row_and_column(tmp_path, capsys, cifar10):
    path = tmp_path / "runs.csv"
    cifar10.assign(test_acc=cifar10.test_acc.where(cifar10.index != 3, 170.0)).to_csv(path, index=False)
    err = _refused(capsys, path)
    assert err.split("error: ")[1].startswith("test_acc: 1 accuracy value(s) outside 0.0-100.0 percent")
    assert f"{path} row 5: 170.0" in err


def test_negative_accuracy_is_refused(tmp_path, capsys, cifar10):
    path = tmp_path / "runs.csv"
    cifar10.assign(test_acc=cifar10.test_acc.where(cifar10.index != 0, -1.5)).to_csv(path, index=False)
    assert f"{path} row 2: -1.5" in _refused(capsys, path)


def test_fractions_are_detected_with_the_advice_to_scale(tmp_path, capsys, cifar10):
    path = tmp_path / "runs.csv"
    cifar10.assign(test_acc=cifar10.test_acc / 100).to_csv(path, index=False)
    err = _refused(capsys, path)
    assert f"every accuracy in {path} lies in 0-1" in err and "multiply by 100" in err


def test_text_in_the_accuracy_column_names_file_row_and_column(tmp_path, capsys, cifar10):
    path = tmp_path / "runs.csv"
    frame = cifar10.astype({"test_acc": object})
    frame.loc[4, "test_acc"] = "abc"
    frame.to_csv(path, index=False)
    err = _refused(capsys, path)
    assert f"test_acc: 1 value(s) are not numbers ({path} row 6: 'abc')" in err
    assert "could not convert" not in err


def test_a_missing_accuracy_of_a_finished_run_names_the_row(tmp_path, capsys, cifar10):
    path = tmp_path / "runs.csv"
    cifar10.assign(test_acc=cifar10.test_acc.where(cifar10.index != 2)).to_csv(path, index=False)
    assert f"test_acc: 1 run(s) have no value ({path} row 4)" in _refused(capsys, path)


def test_a_seed_that_is_not_an_integer_names_file_row_and_column(tmp_path, capsys, cifar10):
    path = tmp_path / "runs.csv"
    frame = cifar10.astype({"seed": object})
    frame.loc[1, "seed"] = "x1"
    frame.to_csv(path, index=False)
    err = _refused(capsys, path)
    assert f"{path}: column seed: 1 value(s) are not integer seeds (row 3: 'x1')" in err


def test_an_empty_csv_names_the_file_and_row(tmp_path, capsys):
    path = tmp_path / "empty.csv"
    path.write_text("")
    err = _refused(capsys, path)
    assert f"{path}: row 1: the file is empty" in err and "No columns to parse" not in err


def test_a_row_with_too_many_fields_names_the_file_and_line(tmp_path, capsys, cifar10):
    path = tmp_path / "runs.csv"
    cifar10.to_csv(path, index=False)
    lines = path.read_text().splitlines()
    lines[4] += ",extra"
    path.write_text("\n".join(lines) + "\n")
    err = _refused(capsys, path)
    assert f"{path}: cannot read CSV" in err and "line 5" in err


def test_a_header_without_the_accuracy_column_names_the_header_row(tmp_path, capsys, cifar10):
    path = tmp_path / "runs.csv"
    cifar10.drop(columns="test_acc").to_csv(path, index=False)
    assert f"{path}: row 1 (the header) lacks column(s) ['test_acc']" in _refused(capsys, path)


def test_a_group_with_one_run_stays_in_the_tables_with_its_n_and_reason(tmp_path, capsys, cifar10):
    path = tmp_path / "runs.csv"
    keep = (cifar10.margin == "subtract") | ((cifar10.stability == "detach") & (cifar10.seed == 1)) | (
        cifar10.stability == "direct")
    cifar10[keep].to_csv(path, index=False)
    rc, out, err = _analyze(capsys, path, "--factor", "stability", "--json", tmp_path / "a.json")
    assert rc == 0, err
    assert re.search(r"\| clamp/detach +\| 1 \|.*skipped: 1 run\(s\); a test of spread needs at least 2", out)
    assert re.search(r"clamp vs subtract \\\| stability=detach +\| +1 / 7 \|.*not tested: clamp/detach has 1 run\(s\)", out)
    doc = json.loads((tmp_path / "a.json").read_text())
    groups = {g["label"]: g for g in doc["designs"][0]["groups"]}
    assert groups["clamp/detach"]["n"] == 1 and groups["clamp/detach"]["skipped"]
    assert [u["n_a"] for u in doc["designs"][0]["untested"]] == [1]
    # The other stability is still tested and adjusted.
    assert len(doc["multiplicity"]["holm"]["labels"]) == 1


def _table_widths(md: str) -> list[int]:
    """Number of cells in each row of every pipe table (escaped pipes are not separators)."""
    return [len(re.split(r"(?<!\\)\|", line.strip())) - 2 for line in md.splitlines() if line.startswith("|")]


def test_a_pipe_in_a_label_is_escaped_in_markdown_and_html(tmp_path, capsys, cifar10):
    path = tmp_path / "runs.csv"
    cifar10.assign(margin=cifar10.margin.replace("clamp", "cl|amp<b>")).to_csv(path, index=False)
    rc, out, err = _analyze(capsys, path, "--levels", "cl|amp<b>,subtract", "--factor", "stability")
    assert rc == 0, err
    assert "| cl\\|amp<b>/detach " in out
    # Every row of a table has as many cells as its header.
    blocks = re.findall(r"((?:^\|.*\n)+)", out, flags=re.M)
    assert blocks and all(len(set(_table_widths(b))) == 1 for b in blocks)
    rep = tmp_path / "rep"
    assert main(["report", str(path), "--levels", "cl|amp<b>,subtract", "--factor", "stability", "--resamples", "50",
                 "--out", str(rep)]) == 0
    html = (rep / "report.html").read_text()
    assert "<td>cl|amp&lt;b&gt;/detach</td>" in html and "<b>/detach" not in html
    for table in re.findall(r"<table>(.*?)</table>", html, flags=re.S):
        rows = re.findall(r"<tr>(.*?)</tr>", table, flags=re.S)
        assert len({len(re.findall(r"<t[hd][ >]", r)) for r in rows}) == 1


def test_messages_and_tables_print_plain_numbers(tmp_path, capsys, cifar10):
    path = tmp_path / "runs.csv"
    cifar10.to_csv(path, index=False)
    rc, out, err = _analyze(capsys, path, "--factor", "stability", "--min-ratio", "3")
    assert rc == 0 and "np.float" not in out + err and "np.int" not in out + err


@pytest.mark.parametrize("argv, message", [
    (["--primary", "welch"], "--primary: unknown test 'welch'; choose one of F, levene"),
    (["--min-ratio", "1"], "--min-ratio: must be a variance ratio > 0 other than 1, got 1"),
    (["--power", "1.5"], "--power: must lie between the level 0.05 and 1, got 1.5"),
    (["--log-ratio-width", "0"], "--log-ratio-width: must be a positive width"),
    (["--allocation", "-1"], "--allocation: must be a ratio n_B / n_A > 0, got -1"),
])
def test_bad_verdict_options_exit_2(tmp_path, capsys, cifar10, argv, message):
    path = tmp_path / "runs.csv"
    cifar10.to_csv(path, index=False)
    assert message in _refused(capsys, path, *argv)


def test_rows_are_numbered_as_lines_of_the_file_even_after_a_blank_line(tmp_path, capsys, cifar10):
    path = tmp_path / "runs.csv"
    cifar10.assign(test_acc=cifar10.test_acc.where(cifar10.index != 5, 170.0)).to_csv(path, index=False)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3] + [""] + lines[3:]) + "\n")  # a blank line before row 4
    assert f"{path} row 8: 170.0" in _refused(capsys, path)  # data row 6 + header + the blank line
    cifar10.to_csv(path, index=False)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3] + [""] + lines[3:4] * 2 + lines[4:]) + "\n")  # and row 4 twice
    err = _refused(capsys, path)
    assert "seed=3 (" in err and f"{path} row 5, {path} row 6" in err  # integer seeds, lines of the file
