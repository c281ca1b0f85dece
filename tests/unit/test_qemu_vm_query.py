"""qemu_vm's state query (library/qemu_vm.py, state=query): how a VM stands, and whether it
runs as a command line asks, by the rules of state=running, changing nothing. Real
processes with real pidfiles, and a fake QMP monitor on a real socket."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_qemu_guest import run_main
from test_qemu_migrate import FakeQEMU
from test_qemu_vm import process, qemu_vm  # noqa: F401 (fixtures)

CODE = "import time; time.sleep(60)"


@pytest.fixture
def vm(tmp_path, process):  # noqa: F811
    """A stand-in QEMU: a process whose command line names its pidfile, and its monitor."""
    made = {}

    def start(status: str, *extra: str) -> dict:
        pidfile = tmp_path / "qemu.pid"
        args = ["-name", "vm0", "-pidfile", str(pidfile), *extra]
        pid = process(*args)
        pidfile.write_text(f"{pid}\n")
        made["qemu"] = start.qemu = FakeQEMU(tmp_path / "qmp.sock", vm=status)
        return {
            "pid": pid,
            "argv": [sys.executable, "-c", CODE, *args],
            "pidfile": str(pidfile),
            "qmp": str(tmp_path / "qmp.sock"),
        }

    yield start
    if "qemu" in made:
        made["qemu"].stop()


def query(module, **args) -> dict:
    args.pop("pid", None)  # the stand-in's, not an option
    return run_main(module, {"state": "query", "timeout": 2, **args})


def test_a_vm_that_runs_as_asked(qemu_vm, vm):  # noqa: F811
    running = vm("running")

    result = query(qemu_vm, **running)

    assert result["changed"] is False and result["started"] is False
    assert (result["pid"], result["status"], result["as_asked"]) == (
        running["pid"],
        "running",
        True,
    )
    assert "why" not in result


def test_a_vm_with_another_command_line_is_not_as_asked_and_is_left_running(qemu_vm, vm):  # noqa: F811
    running = vm("running")
    asked = running["argv"] + ["-m", "512"]

    result = query(qemu_vm, **{**running, "argv": asked})

    assert result["as_asked"] is False
    assert "different command line (differs in: -m 512)" in result["why"]
    assert Path(f"/proc/{running['pid']}").exists()


def test_a_source_whose_guest_left_is_not_a_destination(qemu_vm, vm):  # noqa: F811
    migrated = vm("postmigrate")

    as_source = query(qemu_vm, **migrated)
    as_destination = query(
        qemu_vm, **{**migrated, "argv": migrated["argv"] + ["-incoming", "defer"]}
    )

    assert as_source["as_asked"] is True
    assert as_destination["as_asked"] is False
    assert as_destination["why"] == "its guest has migrated away (postmigrate)"


def test_a_destination_told_to_listen_is_spent(qemu_vm, vm, tmp_path):  # noqa: F811
    waiting = vm("inmigrate")
    asked = {**waiting, "argv": waiting["argv"] + ["-incoming", "defer"]}
    fresh = query(qemu_vm, **asked)

    # As an earlier run leaves it: migrate-incoming given, nothing received yet.
    vm.qemu.migration = {
        "status": "none",
        "socket-address": [{"type": "inet", "host": "10.10.1.2", "port": "4444"}],
    }
    spent = query(qemu_vm, **asked)

    assert fresh["as_asked"] is True
    assert spent["as_asked"] is False
    assert spent["why"] == "an earlier run told it to listen (inet:10.10.1.2:4444)"
    assert "migrate-incoming" not in vm.qemu.names()


def test_no_vm_and_nothing_touched(qemu_vm, tmp_path):  # noqa: F811
    pidfile = tmp_path / "qemu.pid"
    pidfile.write_text("999999999\n")  # stale: no such process
    (tmp_path / "qmp.sock").write_text("")

    bare = query(qemu_vm, pidfile=str(pidfile), qmp=str(tmp_path / "qmp.sock"))
    asked = query(qemu_vm, pidfile=str(pidfile), qmp=str(tmp_path / "qmp.sock"), argv=["qemu"])

    assert (bare["pid"], bare["status"], bare["changed"]) == (None, None, False)
    assert "as_asked" not in bare
    assert (asked["as_asked"], asked["why"]) == (False, "it does not run")
    assert pidfile.exists() and (tmp_path / "qmp.sock").exists()
