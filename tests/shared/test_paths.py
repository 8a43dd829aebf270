"""Atomic writes: a failed write names the path and the cause, leaves no temp file, changes nothing."""

import errno
import os
import stat

import pytest

from shared import paths
from shared.errors import UserError, WriteFailed


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "r.json"
    paths.atomic_write_text(target, "one")
    paths.atomic_write_text(target, "two")
    assert target.read_text() == "two" and os.listdir(target.parent) == ["r.json"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; the simulated case below runs")
def test_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "done.json").write_text("finished")
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(WriteFailed, match=r"cannot write .*ro/done.json: permission denied"):
            paths.atomic_write_text(folder / "done.json", "new")
        assert sorted(os.listdir(folder)) == ["done.json"] and (folder / "done.json").read_text() == "finished"
    finally:
        folder.chmod(stat.S_IRWXU)


@pytest.mark.parametrize(
    "code,cause",
    [
        (errno.ENOSPC, "no space left on the device"),
        (errno.EROFS, "the file system is read-only"),
        (errno.EACCES, "permission denied"),
    ],
)
def test_failed_write_names_path_and_cause_and_removes_temp(tmp_path, monkeypatch, code, cause):
    target = tmp_path / "done.json"
    target.write_text("finished")
    real_open = open

    class FailingFile:
        """Opens the temp file for real (so it exists), then fails the write as a full disk would."""

        def __init__(self, *args, **kwargs):
            self.f = real_open(*args, **kwargs)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[:1])
            raise OSError(code, os.strerror(code))

    monkeypatch.setattr(paths, "open", FailingFile, raising=False)
    with pytest.raises(WriteFailed, match=rf"cannot write {target}: {cause}") as info:
        paths.atomic_write_text(target, "new")
    assert isinstance(info.value, UserError)
    assert os.listdir(tmp_path) == ["done.json"] and target.read_text() == "finished"


def test_rename_failure_removes_temp(tmp_path, monkeypatch):
    def refuse(src, dst):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(paths.os, "replace", refuse)
    with pytest.raises(WriteFailed, match="permission denied"):
        paths.atomic_write_bytes(tmp_path / "x.bin", b"data")
    assert os.listdir(tmp_path) == []


def test_a_file_where_a_folder_should_be(tmp_path):
    (tmp_path / "runs").write_text("not a folder")
    with pytest.raises(WriteFailed, match=rf"{tmp_path / 'runs'} is a file, not a folder"):
        paths.atomic_write_text(tmp_path / "runs" / "a" / "r.json", "x")
    with pytest.raises(WriteFailed, match="it is a folder"):
        paths.atomic_write_text(tmp_path, "x")


def test_interrupted_write_removes_temp(tmp_path, monkeypatch):
    monkeypatch.setattr(paths.os, "fsync", lambda fd: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        paths.atomic_write_text(tmp_path / "x.json", "x")
    assert os.listdir(tmp_path) == []


def test_main_guard_stops_quietly_on_a_closed_pipe():
    import subprocess
    import sys

    code = (
        "from shared.errors import main_guard\n"
        "@main_guard\n"
        "def main():\n"
        "    for i in range(100000):\n"
        "        print('line', i)\n"
        "raise SystemExit(main())\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # as `| head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and "Traceback" not in err
