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


# ----------------------------------------------------------------------------------------------------
# check_range / check_count: non-finite numbers are bad input
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_check_range_refuses_non_finite_numbers(value):
    from shared.errors import check_range

    # every comparison with NaN is false, so a plain `low <= value <= high` test would let it through
    with pytest.raises(UserError, match=rf"--lr must be a finite number in \(0.0, inf\], got {value}"):
        check_range("--lr", value, 0.0, float("inf"), low_open=True)


def test_check_range_bounds_and_open_ends():
    from shared.errors import check_range

    assert check_range("x", 0.5, 0, 1) == 0.5 and check_range("x", 1, 0, 1) == 1
    with pytest.raises(UserError, match=r"x must be in \[0, 1\), got 1"):
        check_range("x", 1, 0, 1, high_open=True)
    with pytest.raises(UserError, match=r"x must be in \(0, 1\], got 0"):
        check_range("x", 0, 0, 1, low_open=True)


def test_check_count():
    from shared.errors import check_count

    assert check_count("--max_steps", 1) == 1
    with pytest.raises(UserError, match="--max_steps must be >= 1, got 0"):
        check_count("--max_steps", 0)
    with pytest.raises(UserError, match=r"--n must be in \[0, 3\], got 4"):
        check_count("--n", 4, 0, 3)
    with pytest.raises(UserError, match="whole number"):
        check_count("--n", 2.5)


# ----------------------------------------------------------------------------------------------------
# The run-folder lock and the writability probe
# ----------------------------------------------------------------------------------------------------


def test_run_folder_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
    folder = tmp_path / "run_0"
    folder.mkdir()
    (folder / "ckpt").write_text("data")
    with paths.RunFolderLock(folder, "stage 0"):
        # a second open file description conflicts even in the same process (flock semantics)
        with pytest.raises(paths.FolderBusy, match=rf"{folder} is in use by process {os.getpid()} on .*stage 0"):
            paths.RunFolderLock(folder, "stage 0").acquire()
    with paths.RunFolderLock(folder):  # released: the next run gets it
        pass
    assert sorted(os.listdir(folder)) == [".lock", "ckpt"]  # an existing folder keeps its lock file


def test_run_folder_lock_in_another_process_and_after_its_death(tmp_path):
    import subprocess
    import sys
    import time

    folder = tmp_path / "run_1"
    code = (
        "import sys, time\n"
        "from shared.paths import RunFolderLock\n"
        "RunFolderLock(sys.argv[1]).acquire()\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(paths.FolderBusy, match=rf"in use by process {holder.pid} "):
            paths.RunFolderLock(folder).acquire()
    finally:
        holder.kill()  # SIGKILL: no clean-up runs, the kernel drops the lock with the process
        holder.wait()
    deadline = time.time() + 10
    while True:
        try:
            paths.RunFolderLock(folder).acquire().release()
            break
        except paths.FolderBusy:
            assert time.time() < deadline
            time.sleep(0.05)


def test_run_folder_lock_leaves_no_folder_it_created_empty(tmp_path):
    folder = tmp_path / "new_0"
    with paths.RunFolderLock(folder):
        assert (folder / ".lock").is_file()
    assert not folder.exists()
    with paths.RunFolderLock(folder):
        (folder / "result.json").write_text("{}")
    assert sorted(os.listdir(folder)) == [".lock", "result.json"]


def test_run_folder_lock_under_a_file(tmp_path):
    (tmp_path / "train_0").write_text("a file")
    with pytest.raises(WriteFailed, match=rf"{tmp_path / 'train_0'} is a file, not a folder"):
        paths.RunFolderLock(tmp_path / "train_0", "stage 0").acquire()


def test_check_writable_names_the_folder_and_the_cause(tmp_path, monkeypatch):
    assert paths.check_writable(tmp_path / "out" / "ista") == tmp_path / "out" / "ista"
    assert os.listdir(tmp_path) == []  # probed in the nearest existing parent, nothing created
    (tmp_path / "out").mkdir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(WriteFailed, match=rf"{tmp_path / 'file'} is a file, not a folder"):
        paths.check_writable(tmp_path / "file" / "ista")
    real_open = open

    def full_disk(path, *args, **kwargs):
        if ".write-test" in str(path):
            real_open(path, "wb").close()  # the file appears, then the write fails
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(paths, "open", full_disk, raising=False)
    with pytest.raises(WriteFailed, match=rf"cannot write record folder {tmp_path / 'out'}: no space left"):
        paths.check_writable(tmp_path / "out", "record")
    assert os.listdir(tmp_path / "out") == []
