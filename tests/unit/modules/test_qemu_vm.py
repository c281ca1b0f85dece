"""qemu_vm (library/qemu_vm.py) trusts a pid only when that process was started with the
VM's own pidfile: real processes, real pidfiles."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from library import qemu_vm


class Params:
    def __init__(self, pidfile: Path) -> None:
        self.params = {"pidfile": str(pidfile), "qmp": "/nonexistent", "sockets": []}


@pytest.fixture
def process():
    """Start a harmless process whose command line ends in ARGS; it is stopped after."""
    started: list[subprocess.Popen] = []

    def start(*args: str) -> int:
        code = "import time; time.sleep(60)"
        started.append(subprocess.Popen([sys.executable, "-c", code, *args]))
        pid = started[-1].pid
        # Popen may return before the exec has set the child's command line.
        deadline = time.monotonic() + 5
        while not Path(f"/proc/{pid}/cmdline").read_bytes().strip(b"\0"):
            assert time.monotonic() < deadline, "the process never got its command line"
            time.sleep(0.01)
        return pid

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def vm_with_pidfile(pidfile: Path, pid: int):
    pidfile.write_text(f"{pid}\n")
    return qemu_vm.VM(Params(pidfile))


def test_a_process_started_with_this_pidfile_is_the_vm(process, tmp_path):
    pidfile = tmp_path / "vm0" / ".." / "vm0.pid"
    (tmp_path / "vm0").mkdir()
    pid = process("-name", "vm0", "-pidfile", str(tmp_path / "vm0.pid"), "-daemonize")

    vm = vm_with_pidfile(pidfile, pid)

    assert vm.pid() == pid


def test_a_stale_pidfile_naming_another_vms_qemu_is_not_trusted(process, tmp_path):
    # The pid now belongs to the QEMU of another VM, started with its own pidfile.
    other = process("-name", "vm1", "-pidfile", str(tmp_path / "vm1.pid"))

    vm = vm_with_pidfile(tmp_path / "vm0.pid", other)

    assert vm.pid() is None


def test_a_stale_pidfile_naming_a_process_without_pidfile_is_not_trusted(process, tmp_path):
    other = process("-pidfile")  # the flag alone, as the old check accepted

    vm = vm_with_pidfile(tmp_path / "vm0.pid", other)

    assert vm.pid() is None


@pytest.mark.parametrize("content", ["", "abc", "0", "-1", "999999999"])
def test_a_pidfile_without_a_live_pid_means_no_vm(tmp_path, content):
    pidfile = tmp_path / "vm0.pid"
    pidfile.write_text(content)

    assert qemu_vm.VM(Params(pidfile)).pid() is None


def test_pidfile_of_reads_the_argument_after_the_flag():
    argv = ["qemu-system-x86_64", "-name", "vm0", "-pidfile", "/run/q/vm0//qemu.pid", "-daemonize"]

    assert qemu_vm.VM.pidfile_of(argv) == "/run/q/vm0/qemu.pid"
    assert qemu_vm.VM.pidfile_of(["qemu", "-pidfile"]) is None
