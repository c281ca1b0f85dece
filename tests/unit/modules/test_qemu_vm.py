"""qemu_vm (library/qemu_vm.py) trusts a pid only when that process was started with the
VM's own pidfile: real processes, real pidfiles."""

from __future__ import annotations

import subprocess
import sys
import threading
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


# -- state=query: how a VM stands, changing nothing ------------------------------------

CODE = "import time; time.sleep(60)"


@pytest.fixture
def vm(tmp_path, process, qemu):
    """A stand-in QEMU: a process whose command line names its pidfile, and its monitor
    (a FakeQEMU in run state STATUS, as vm.qemu)."""

    def start(status: str, *extra: str) -> dict:
        pidfile = tmp_path / "qemu.pid"
        args = ["-name", "vm0", "-pidfile", str(pidfile), *extra]
        pid = process(*args)
        pidfile.write_text(f"{pid}\n")
        start.qemu = qemu(vm=status)
        return {
            "pid": pid,
            "argv": [sys.executable, "-c", CODE, *args],
            "pidfile": str(pidfile),
            "qmp": start.qemu.path,
        }

    return start


@pytest.fixture
def query(run_main):
    def run(module, **args) -> dict:
        args.pop("pid", None)  # the stand-in's, not an option
        return run_main(module, {"state": "query", "timeout": 2, **args})

    return run


def test_a_vm_that_runs_as_asked(vm, query):
    running = vm("running")

    result = query(qemu_vm, **running)

    assert result["changed"] is False and result["started"] is False
    assert (result["pid"], result["status"], result["as_asked"]) == (
        running["pid"],
        "running",
        True,
    )
    assert "why" not in result


def test_a_vm_with_another_command_line_is_not_as_asked_and_is_left_running(vm, query):
    running = vm("running")
    asked = running["argv"] + ["-m", "512"]

    result = query(qemu_vm, **{**running, "argv": asked})

    assert result["as_asked"] is False
    assert "different command line (differs in: -m 512)" in result["why"]
    assert Path(f"/proc/{running['pid']}").exists()


def test_a_source_whose_guest_left_is_not_a_destination(vm, query):
    migrated = vm("postmigrate")

    as_source = query(qemu_vm, **migrated)
    as_destination = query(
        qemu_vm, **{**migrated, "argv": migrated["argv"] + ["-incoming", "defer"]}
    )

    assert as_source["as_asked"] is True
    assert as_destination["as_asked"] is False
    assert as_destination["why"] == "its guest has migrated away (postmigrate)"


def test_a_destination_told_to_listen_is_spent(vm, query):
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


def test_no_vm_and_nothing_touched(query, tmp_path):
    pidfile = tmp_path / "qemu.pid"
    pidfile.write_text("999999999\n")  # stale: no such process
    (tmp_path / "qmp.sock").write_text("")

    bare = query(qemu_vm, pidfile=str(pidfile), qmp=str(tmp_path / "qmp.sock"))
    asked = query(qemu_vm, pidfile=str(pidfile), qmp=str(tmp_path / "qmp.sock"), argv=["qemu"])

    assert (bare["pid"], bare["status"], bare["changed"]) == (None, None, False)
    assert "as_asked" not in bare
    assert (asked["as_asked"], asked["why"]) == (False, "it does not run")
    assert pidfile.exists() and (tmp_path / "qmp.sock").exists()


# -- state=query with incoming: a fresh destination told to listen in the same run -------

INCOMING = {
    "uri": "tcp:10.10.1.2:4444",
    # as -e gives them: strings, which the QEMU's own types decide
    "capabilities": {"multifd": "true"},
    "parameters": {"multifd-channels": "4", "downtime-limit": 300},
}


def destination(vm, status: str) -> dict:
    waiting = vm(status)
    return {**waiting, "argv": waiting["argv"] + ["-incoming", "defer"]}


def test_a_fresh_destination_is_told_to_listen_with_the_settings(vm, query):
    asked = destination(vm, "inmigrate")

    result = query(qemu_vm, **asked, incoming=INCOMING)
    again = query(qemu_vm, **asked, incoming=INCOMING)

    assert (result["as_asked"], result["changed"]) == (True, True)
    assert result["listening"] == INCOMING
    assert vm.qemu.capabilities["multifd"] is True and vm.qemu.capabilities["events"] is True
    assert vm.qemu.parameters["multifd-channels"] == 4
    assert ("migrate-incoming", {"uri": "tcp:10.10.1.2:4444"}) in vm.qemu.commands
    # told once: the next look finds it spent, and tells it nothing again
    assert again["as_asked"] is False and "told it to listen" in again["why"]
    assert "listening" not in again
    assert vm.qemu.names().count("migrate-incoming") == 1


def test_a_destination_refusing_the_settings_is_left_as_it_was(vm, query):
    asked = destination(vm, "inmigrate")
    wrong = {**INCOMING, "capabilities": {"x-no-such-capability": True}}

    result = query(qemu_vm, **asked, incoming=wrong)

    assert (result["as_asked"], result["changed"]) == (True, False)
    assert "listening" not in result
    assert "x-no-such-capability not supported by this QEMU" in result["incoming_error"]
    assert "migrate-incoming" not in vm.qemu.names()
    assert "migrate-set-capabilities" not in vm.qemu.names()


@pytest.mark.parametrize(
    ("status", "as_destination"),
    [("running", True), ("running", False), ("postmigrate", True)],
    ids=["guest-arrived", "a-source", "guest-left"],
)
def test_only_a_fresh_destination_is_told_to_listen(vm, query, status, as_destination):
    asked = destination(vm, status) if as_destination else vm(status)

    result = query(qemu_vm, **asked, incoming=INCOMING)

    assert result["changed"] is False and "listening" not in result
    assert "migrate-incoming" not in vm.qemu.names()


def test_state_running_tells_a_fresh_destination_to_listen(vm, query):
    # A round trip's new destination, found waiting fresh: one module run starts (here:
    # keeps) it and lets it listen.
    asked = destination(vm, "inmigrate")

    result = query(qemu_vm, **asked, state="running", incoming=INCOMING)

    assert (result["changed"], result["started"], result["status"]) == (True, False, "inmigrate")
    assert result["listening"] == INCOMING
    assert vm.qemu.parameters["multifd-channels"] == 4
    assert vm.qemu.names().count("migrate-incoming") == 1


def test_state_running_leaves_a_source_alone(vm, query):
    # no -incoming: a source whose guest has left, kept as it is, told nothing
    asked = vm("postmigrate")

    result = query(qemu_vm, **asked, state="running", incoming=INCOMING)

    assert result["changed"] is False and "listening" not in result
    assert "migrate-incoming" not in vm.qemu.names()


def test_state_running_fails_for_a_destination_running_the_guest(vm, query):
    asked = destination(vm, "running")

    result = query(qemu_vm, **asked, state="running", incoming=INCOMING)

    assert result["failed"] is True
    assert "does not wait for a migration (it is running)" in result["msg"]
    assert "migrate-incoming" not in vm.qemu.names()


def test_state_running_fails_for_a_destination_that_would_not_listen(vm, query):
    asked = destination(vm, "inmigrate")
    wrong = {**INCOMING, "capabilities": {"x-no-such-capability": True}}

    result = query(qemu_vm, **asked, state="running", incoming=wrong)

    assert result["failed"] is True and "listening" not in result
    assert "x-no-such-capability not supported by this QEMU" in result["msg"]
    assert "migrate-incoming" not in vm.qemu.names()


def test_check_mode_tells_no_destination_to_listen(vm, query):
    asked = destination(vm, "inmigrate")

    result = query(qemu_vm, **asked, incoming=INCOMING, _ansible_check_mode=True)

    assert (result["as_asked"], result["changed"]) == (True, False)
    assert "listening" not in result
    assert "migrate-incoming" not in vm.qemu.names()


# -- state=query with serial_log: a guest that has migrated, seen in the same run ---------

COMPLETED = {"status": "completed", "total-time": 712, "downtime": 31, "ram": {"transferred": 9}}


def beats(*numbers: int) -> str:
    return "".join(f"qmigrate-heartbeat {n} {n / 10:.2f}\r\n" for n in numbers)


def test_a_migrated_source_gives_its_account_as_qemu_migrate_would(vm, query, tmp_path):
    migrated = vm("postmigrate")
    vm.qemu.migration = dict(COMPLETED)
    log = tmp_path / "serial.log"
    log.write_text("booted\n" + beats(1, 2, 3))

    result = query(qemu_vm, **migrated, serial_log=str(log))

    account = result["migrated"]
    assert (result["as_asked"], result["changed"]) == (True, False)
    assert account["msg"] == "the VM has already migrated"
    assert (account["status"], account["vm_status"], account["changed"]) == (
        "completed",
        "postmigrate",
        False,
    )
    assert (account["stats"]["total_time_ms"], account["stats"]["downtime_ms"]) == (712, 31)
    assert account["parameters"]["downtime-limit"] == 300
    assert account["capabilities"]["multifd"] is False
    assert (account["protocol"], account["timeline"], account["events"]) == ("qmp", [], [])
    assert account["serial_tail"].endswith(beats(3))
    assert "guest" not in result
    assert not {"migrate", "migrate-incoming", "cont"} & set(vm.qemu.names())


@pytest.mark.parametrize(
    ("status", "migration"),
    [("postmigrate", {"status": "failed"}), ("running", COMPLETED), ("inmigrate", {})],
    ids=["its-migration-failed", "it-runs", "it-waits"],
)
def test_only_a_source_that_migrated_gives_an_account(vm, query, tmp_path, status, migration):
    source = vm(status)
    vm.qemu.migration = dict(migration)
    log = tmp_path / "serial.log"
    log.write_text(beats(1, 2))

    result = query(qemu_vm, **source, serial_log=str(log))

    assert "migrated" not in result and "guest" not in result


def test_a_destination_running_the_guest_gives_its_heartbeat_going_on(vm, query, tmp_path):
    arrived = destination(vm, "running")
    log = tmp_path / "serial.log"
    log.write_text(beats(41))  # as qemu_guest: the first heartbeat, then a later one

    def later() -> None:
        time.sleep(0.3)
        with log.open("a") as out:
            out.write(beats(42))

    writer = threading.Thread(target=later)
    writer.start()
    result = query(qemu_vm, **arrived, serial_log=str(log), heartbeat_timeout=5)
    writer.join()

    guest = result["guest"]
    assert (guest["vm_status"], guest["first"], guest["latest"]) == ("running", 41, 42)
    assert guest["waited"] >= 0.2
    assert guest["head"].startswith(beats(41))
    assert "migrated" not in result


def test_a_destination_whose_guest_is_silent_is_reported_as_it_is(vm, query, tmp_path):
    arrived = destination(vm, "running")
    log = tmp_path / "serial.log"
    log.write_text(beats(7))

    result = query(qemu_vm, **arrived, serial_log=str(log), heartbeat_timeout=0.3)

    assert (result["guest"]["first"], result["guest"]["latest"]) == (7, 7)


def test_a_vm_not_as_asked_is_not_observed(vm, query, tmp_path):
    migrated = vm("postmigrate")
    vm.qemu.migration = dict(COMPLETED)
    log = tmp_path / "serial.log"
    log.write_text(beats(1))

    result = query(
        qemu_vm, **{**migrated, "argv": migrated["argv"] + ["-m", "512"]}, serial_log=str(log)
    )

    assert result["as_asked"] is False and "migrated" not in result
