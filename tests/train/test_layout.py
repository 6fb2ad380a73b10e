"""The run-folder layout of `cffaudit train --out DIR` (cffaudit.train.layout)."""

import pytest

from cffaudit.train.layout import run_folders


def test_one_seed_writes_into_the_folder_itself(tmp_path):
    folders = run_folders(tmp_path, [4])
    assert folders.out_dirs == (tmp_path,)
    assert folders.checkpoint == tmp_path / "checkpoint.pt"
    assert folders.results == (tmp_path / "result.json",)


def test_several_seeds_get_a_folder_each_and_one_named_checkpoint(tmp_path):
    folders = run_folders(tmp_path, [2, 3])
    assert folders.out_dirs == (tmp_path / "seed-2", tmp_path / "seed-3")
    assert folders.checkpoint == tmp_path / "checkpoint-seeds-2_3.pt"
    assert folders.existing() == []
    (tmp_path / "seed-3").mkdir()
    (tmp_path / "seed-3" / "result.json").write_text("{}")
    folders.checkpoint.write_bytes(b"")
    assert folders.existing() == [folders.checkpoint, tmp_path / "seed-3" / "result.json"]


def test_no_seeds_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="seeds: give at least one seed"):
        run_folders(tmp_path, [])
