"""runtime.outputs: special files written in place, symlinks followed, full disks and crashes leave
the old file and no temp file, stale temps cleaned, .mlpackage replaced with rollback, strict JSON."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from runtime import outputs
from runtime.errors import DeployError
from runtime.outputs import OutputError, atomic_write, check_output_path, replace_directory, write_text


def make_device(path: Path) -> Path:
    """A copy of /dev/null (char device 1:3) inside tmp_path; never the real /dev."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod needs root (CAP_MKNOD)")
    return path


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def write_bytes(data: bytes):
    return lambda tmp: Path(tmp).write_bytes(data)


def test_regular_file_replaced_atomically_with_umask_permissions(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    assert write_text(target, "new") == target
    assert target.read_text() == "new" and leftovers(tmp_path) == []
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


def test_device_target_is_written_directly_and_stays_a_device(tmp_path):
    device = make_device(tmp_path / "null")
    write_text(device, '{"a": 1}')
    atomic_write(device, write_bytes(b"x" * 1000), expected_bytes=1 << 60)  # no space check for a device
    assert stat.S_ISCHR(device.stat().st_mode) and os.major(device.stat().st_rdev) == 1
    assert leftovers(tmp_path) == []


def test_fifo_target_is_written_directly_and_stays_a_fifo(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()  # the write below blocks until a reader opens the FIFO
    write_text(fifo, "through the pipe")
    reader.join(timeout=30)
    assert received == ["through the pipe"]
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and leftovers(tmp_path) == []


def test_symlink_is_kept_and_its_target_updated(tmp_path):
    (tmp_path / "real").mkdir()
    real = tmp_path / "real" / "report.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert write_text(link, "new") == real
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == "new" and leftovers(tmp_path / "real") == []


def test_symlink_to_a_device_writes_the_device(tmp_path):
    device = make_device(tmp_path / "null")
    link = tmp_path / "stdout"
    link.symlink_to(device)
    write_text(link, "x")
    assert link.is_symlink() and stat.S_ISCHR(device.stat().st_mode)


def test_directory_target_is_refused(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(OutputError, match=r"cannot write --json .*out: it is a directory"):
        check_output_path(tmp_path / "out", what="--json")
    with pytest.raises(OutputError, match="it is a directory"):
        write_text(tmp_path / "out", "x")
    assert list((tmp_path / "out").iterdir()) == []


def test_socket_target_is_refused(tmp_path):
    import socket

    path = tmp_path / "s"
    if len(str(path)) > 100:
        pytest.skip("tmp_path too long for a unix socket name")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        with pytest.raises(OutputError, match="socket"):
            write_text(path, "x")
        assert stat.S_ISSOCK(path.stat().st_mode)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp: (tmp / "file").write_text("x"), "file is a file, not a directory"),
        (lambda tmp: None, "directory .*file(/deeper)? does not exist"),
    ],
)
def test_missing_parent_says_what_is_in_the_way(tmp_path, make, message):
    make(tmp_path)
    for path in (tmp_path / "file" / "x.json", tmp_path / "file" / "deeper" / "x.json"):
        with pytest.raises(OutputError, match=message) as info:
            check_output_path(path)
        assert "\n" not in str(info.value) and isinstance(info.value, DeployError)


def test_dash_is_stdout_only_where_allowed(tmp_path, capsys):
    assert check_output_path("-", stdout_ok=True) == Path("-")
    with pytest.raises(OutputError, match="cannot go to stdout"):
        check_output_path("-", what="--plot")
    write_text("-", "to stdout\n")
    assert capsys.readouterr().out == "to stdout\n" and not (Path.cwd() / "-").exists()


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temp_of_a_dead_process_is_removed_by_the_next_write(tmp_path):
    stale = tmp_path / f".a.json.alexnet-{dead_pid()}-0badc0de.tmp"
    stale.write_bytes(b"left by SIGKILL")
    live = tmp_path / f".a.json.alexnet-{os.getppid()}-0badc0de.tmp"  # a running writer's: kept
    other = tmp_path / f".b.json.alexnet-{dead_pid()}-0badc0de.tmp"  # another target's: kept
    live.write_bytes(b"")
    other.write_bytes(b"")
    write_text(tmp_path / "a.json", "{}")
    assert not stale.exists() and live.exists() and other.exists()
    assert (tmp_path / "a.json").read_text() == "{}"


def test_not_enough_space_is_refused_before_writing(tmp_path, monkeypatch):
    target = tmp_path / "model.pt"
    target.write_bytes(b"old")
    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda path: SimpleNamespace(free=5_000_000))
    called = []
    with pytest.raises(OutputError, match=r"not enough space on .*: need ~117 MB, 5.0 MB free"):
        atomic_write(target, lambda tmp: called.append(tmp), expected_bytes=100_000_000)
    assert called == [] and target.read_bytes() == b"old" and leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "error, message",
    [
        (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
        (
            RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0\nframe #0: c10::..."),
            r"\[enforce fail at inline_container.cc:672\] . unexpected pos 64 vs 0$",
        ),
    ],
)
def test_failing_writer_is_one_line_and_leaves_old_file_and_no_temp(tmp_path, error, message):
    target = tmp_path / "last.pth"
    target.write_bytes(b"old")

    def half_written(tmp):
        Path(tmp).write_bytes(b"half")
        raise error

    with pytest.raises(OutputError, match=message) as info:
        atomic_write(target, half_written)
    assert "\n" not in str(info.value) and str(target) in str(info.value)
    assert target.read_bytes() == b"old" and leftovers(tmp_path) == []


def test_interrupt_leaves_no_temp(tmp_path):
    def interrupted(tmp):
        Path(tmp).write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "x.png", interrupted)
    assert list(tmp_path.iterdir()) == []


def test_writer_deploy_errors_pass_through(tmp_path):
    class Refused(DeployError, RuntimeError):
        pass

    def refuse(tmp):
        raise Refused("the checker refused it")

    with pytest.raises(Refused):
        atomic_write(tmp_path / "m.onnx", refuse)
    assert list(tmp_path.iterdir()) == []


def build(version: str):
    def make(tmp):
        os.makedirs(os.path.join(tmp, "Data"))
        Path(tmp, "version").write_text(version)

    return make


def test_directory_replaced_and_rolled_back_when_the_second_rename_fails(tmp_path, monkeypatch):
    target = tmp_path / "m.mlpackage"
    replace_directory(target, build("old"))
    real_replace, calls = os.replace, []

    def failing_second(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError(errno.EIO, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", failing_second)
    with pytest.raises(OutputError, match="Input/output error"):
        replace_directory(target, build("new"))
    monkeypatch.undo()
    assert len(calls) == 3  # aside, (failed) in, back
    assert (target / "version").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["m.mlpackage"]
    replace_directory(target, build("new"))
    assert (target / "version").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["m.mlpackage"]


def test_package_moved_aside_by_a_killed_run_is_put_back(tmp_path):
    target = tmp_path / "m.mlpackage"
    stale = tmp_path / f".m.mlpackage.alexnet-{dead_pid()}-0badc0de.tmp"
    build("old")(str(stale / "m.mlpackage.old"))  # killed between its two renames: target absent
    build("half")(str(stale / "m.mlpackage"))
    assert outputs.remove_stale_temps(target) == [stale]
    assert (target / "version").read_text() == "old" and not stale.exists()


def test_directory_target_may_not_be_a_device(tmp_path):
    device = make_device(tmp_path / "m.mlpackage")
    with pytest.raises(OutputError, match="not a directory"):
        replace_directory(device, build("new"))
    assert stat.S_ISCHR(device.stat().st_mode)


def test_json_is_strict_and_names_the_bad_value():
    assert json.loads(outputs.dumps_json({"a": [1.5, None]})) == {"a": [1.5, None]}
    with pytest.raises(OutputError, match=r"per_class\[1\]\.f1 is not a finite number"):
        outputs.dumps_json({"top1": 0.5, "per_class": [{"f1": 1.0}, {"f1": float("nan")}]})


def test_checkpoint_save_full_disk_runtime_error_is_one_line(tmp_path, monkeypatch):
    import torch
    from builders import checkpoint_object

    from alexnet.checkpoint import CheckpointError, save_checkpoint

    path = tmp_path / "last.pth"
    save_checkpoint(checkpoint_object(), path)
    before = path.read_bytes()

    def full(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"half")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1234 vs 0")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CheckpointError, match=r"cannot save checkpoint .*last.pth: \[enforce fail") as info:
        save_checkpoint(checkpoint_object(), path)
    assert "\n" not in str(info.value)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.pth"]


def test_checkpoint_save_checks_space_from_the_tensor_sizes(tmp_path, monkeypatch):
    from builders import checkpoint_object

    from alexnet.checkpoint import CheckpointError, save_checkpoint

    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda path: SimpleNamespace(free=1_000_000))
    with pytest.raises(CheckpointError, match=r"not enough space .*: need ~2\d\d MB, 1.0 MB free"):
        # the full-size cifar variant: 233 MB of fp32 weights, never written
        save_checkpoint(checkpoint_object(width_divisor=1), tmp_path / "x.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_old_package_is_kept_when_it_cannot_be_put_back(tmp_path, monkeypatch):
    target = tmp_path / "m.mlpackage"
    replace_directory(target, build("old"))
    real_replace = os.replace

    def only_aside(src, dst):
        if Path(dst).name != "m.mlpackage.old":
            raise OSError(errno.EIO, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", only_aside)
    with pytest.raises(OutputError, match=r"Input/output error; the previous version is at .*m.mlpackage.old"):
        replace_directory(target, build("new"))
    monkeypatch.undo()
    [kept] = tmp_path.glob(".m.mlpackage.alexnet-*.tmp/m.mlpackage.old")
    assert (kept / "version").read_text() == "old"


def test_a_link_to_the_own_stdout_keeps_the_order_of_what_was_printed(tmp_path):
    """`--json /dev/stdout > log`: the JSON lands in the log between the lines printed around it."""
    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")
    log = tmp_path / "log"
    code = (
        "import sys; from runtime.outputs import write_text; print('before', flush=False); "
        f"write_text({str(link)!r}, '{{}}\\n'); print('after')"
    )
    with log.open("w") as handle:
        subprocess.run([sys.executable, "-c", code], stdout=handle, check=True, cwd=Path(__file__).parent.parent)
    assert log.read_text() == "before\n{}\nafter\n" and link.is_symlink()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_stdout_on_a_full_disk_is_one_line_from_a_cli(tmp_path):
    """`alexnet-eval --json - > /dev/full` (issue 26, item 7a): an OutputError naming the flag, and
    no "Exception ignored" lines from the interpreter's own flush at exit."""
    code = (
        "import click; from runtime.cliutil import handle_errors; from runtime.outputs import write_text\n"
        "@click.command()\n@handle_errors\ndef cli():\n    write_text('-', 'x' * 100000, what='--json')\ncli()"
    )
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-c", code], stdout=full, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == ["Error: cannot write --json -: No space left on device"]


def test_stdout_that_fails_is_an_output_error(monkeypatch):
    class Full:
        def write(self, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stdout", Full())
    with pytest.raises(OutputError, match=r"^cannot write --json -: No space left on device$"):
        write_text("-", "{}\n", what="--json")
