import pytest

from common import files


def test_atomic_replaces_the_target_only_when_the_writer_finishes(tmp_path):
    path = tmp_path / "sub" / "table.csv"
    assert files.write_text(path, "a\n") == path and path.read_text() == "a\n"
    with pytest.raises(RuntimeError, match="half-way"):
        with files.atomic(path) as tmp:
            assert tmp.parent == path.parent and tmp.suffix == ".csv" and tmp != path
            tmp.write_text("half")
            raise RuntimeError("half-way")
    assert path.read_text() == "a\n"                              # the old file is untouched
    assert sorted(p.name for p in path.parent.iterdir()) == ["table.csv"]   # and nothing is left behind
    files.write_bytes(path, b"b\n")
    assert path.read_bytes() == b"b\n"


def test_atomic_can_give_the_writer_another_suffix(tmp_path):
    with files.atomic(tmp_path / "palette.npz", suffix=".npz") as tmp:
        assert tmp.suffix == ".npz"
        tmp.write_bytes(b"x")
    assert (tmp_path / "palette.npz").read_bytes() == b"x"


def test_the_written_file_gets_the_mode_a_plain_write_would(tmp_path):
    plain, atomic = tmp_path / "plain.txt", tmp_path / "atomic.txt"
    plain.write_text("x")
    files.write_text(atomic, "x")
    assert atomic.stat().st_mode == plain.stat().st_mode
