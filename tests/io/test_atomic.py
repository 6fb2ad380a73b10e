import os

import pytest

from cffaudit.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text


def test_atomic_files_get_ordinary_permissions_and_no_temp_is_left(tmp_path):
    old = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "a.txt", "hello")
        q = atomic_write_bytes(tmp_path / "b.png", b"\x89PNG")
    finally:
        os.umask(old)
    assert p.read_text() == "hello" and q.read_bytes() == b"\x89PNG"
    assert oct(p.stat().st_mode & 0o777) == oct(0o644)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.txt", "b.png"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "result.json"
    atomic_write_json(target, {"status": "done"})
    with pytest.raises(ValueError):
        atomic_write_json(target, {"x": float("nan")})  # JSON has no NaN: refused, not written
    assert target.read_text().strip().startswith("{") and '"done"' in target.read_text()
    assert [f.name for f in tmp_path.iterdir()] == ["result.json"]
