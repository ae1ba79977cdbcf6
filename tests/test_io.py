import errno
import os

import pytest
from PIL import Image

from mien import io as mio
from mien.errors import OutputError


def test_atomic_writes_create_files_without_temp_leftovers(tmp_path):
    mio.atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01")
    mio.atomic_write_text(tmp_path / "b.txt", "héllo")
    mio.atomic_save_png(Image.new("RGB", (4, 3), (10, 20, 30)), tmp_path / "c.png")
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "héllo"
    with Image.open(tmp_path / "c.png") as im:
        assert im.size == (4, 3) and im.getpixel((0, 0)) == (10, 20, 30)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.txt", "c.png"]


def test_failed_replace_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
    target = tmp_path / "meta.csv"
    target.write_text("old")

    def fail(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mio.os, "replace", fail)
    with pytest.raises(OutputError, match="disk full") as e:
        mio.atomic_write_text(target, "new")
    assert str(target) in str(e.value)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["meta.csv"]


def test_failed_write_leaves_no_partial_file(tmp_path):
    class Broken:
        def save(self, f, format):
            f.write(b"half")
            raise OSError(errno.EIO, "I/O error")

    with pytest.raises(OutputError, match="out.png"):
        mio.atomic_save_png(Broken(), tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []


def test_interrupt_removes_temp_and_is_not_converted(tmp_path):
    class Interrupted:
        def save(self, f, format):
            f.write(b"half")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        mio.atomic_save_png(Interrupted(), tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []


def test_permission_error_is_output_error(tmp_path, monkeypatch):
    def deny(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(mio.os, "open", deny)
    with pytest.raises(OutputError, match="permission denied"):
        mio.atomic_write_bytes(tmp_path / "x.bin", b"1")
    with pytest.raises(OutputError, match="permission denied"):
        mio.ensure_writable_dir(tmp_path / "sub")


def test_ensure_writable_dir(tmp_path):
    made = mio.ensure_writable_dir(tmp_path / "a" / "b")
    assert made.is_dir() and list(made.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        mio.ensure_writable_dir(tmp_path / "file")
    with pytest.raises(OutputError, match="cannot write .*below"):
        mio.ensure_writable_dir(tmp_path / "file" / "below")


def test_written_file_honours_umask(tmp_path):
    mio.atomic_write_text(tmp_path / "t.txt", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "t.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_atomic_writes_sync_the_file_before_the_rename(tmp_path, monkeypatch):
    """Issue 20 item 5: a rename without fsync can lose the file on a power loss."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(mio.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(mio.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    mio.atomic_write_text(tmp_path / "a.txt", "x")
    assert events[:2] == ["fsync", "replace"] and events.count("fsync") == 2  # the file, then its folder


def test_check_output_path_refuses_what_cannot_be_written_and_creates_nothing(tmp_path):
    (tmp_path / "file").write_text("mine")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        mio.check_output_path(tmp_path / "file", folder=True)
    with pytest.raises(OutputError, match="is a folder"):
        mio.check_output_path(tmp_path, folder=False)
    with pytest.raises(OutputError, match="is a file, not a folder"):
        mio.check_output_path(tmp_path / "file" / "deeper" / "x.png")
    assert mio.check_output_path(tmp_path / "new" / "deeper" / "x.png") == tmp_path / "new" / "deeper" / "x.png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
