"""Atomic output: the target appears only complete, and a failed write leaves nothing behind."""
import pytest

from ffcv_ssl.files import atomic_write, atomic_write_text


def test_text_lands_complete_and_creates_parents(tmp_path):
    path = atomic_write_text(tmp_path / "a" / "b" / "out.json", '{"x": 1}\n')
    assert path.read_text() == '{"x": 1}\n'
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.json"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = atomic_write_text(tmp_path / "out.txt", "old")

    def half_then_fail(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_write(target, half_then_fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
