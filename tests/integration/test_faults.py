"""Issue 12: faults during a migration on the real lab. After each, the source VM runs on
with its guest's heartbeat advancing, the run's record says failed (or interrupted) and
why, and a plain `ansible-playbook migrate.yml` then completes, with nothing rebuilt by
hand. Postcopy is the exception that proves the rule: the guest then lives on the
destination, and the source must never be resumed.

QMIGRATE_FAULT_TRIALS (default 1) repeats each kind of fault; `make soak` runs 5.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from labrun import (
    ROOT,
    heartbeat_advances,
    hmp,
    qemu_pid,
    run_module,
    run_playbooks,
    start_playbooks,
    stop_vms,
)

pytestmark = pytest.mark.lab

TRIALS = int(os.environ.get("QMIGRATE_FAULT_TRIALS", "1"))
LATEST = ROOT / "results" / "latest" / "run.json"
# Slow enough (the guest's ~100 MiB at 4 MB/s) that there is time to hurt the migration.
THROTTLED = {"migration_profile": False, "migration_max_bandwidth": 4_000_000}
# Where qemu_migrate on labsrc leaves its account when its controller goes away.
ACCOUNT = Path("/run/qmigrate/labsrc/vm0/interrupted-migration.json")


def latest_run() -> dict:
    return json.loads(LATEST.read_text())


def wait_for(host: str, status: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    """Until HOST's migration is in STATUS (read over HMP, which the module leaves free)."""
    deadline = time.monotonic() + seconds
    while f"Migration status: {status}" not in hmp(host, "info migrate"):
        assert proc.poll() is None, "the playbook ended first:\n" + proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline, f"the migration never became {status}"
        time.sleep(0.2)


def finish(proc: subprocess.Popen, seconds: float = 300) -> tuple[int, str]:
    try:
        out, err = proc.communicate(timeout=seconds)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out + err


def assert_source_runs_on(rc: int, said: str) -> None:
    assert rc != 0, said[-3000:]
    assert "VM status: running" in hmp("labsrc", "info status")
    assert heartbeat_advances("labsrc")


def assert_a_plain_rerun_completes() -> None:
    run = run_playbooks("migrate.yml", timeout=600)
    assert run.rc == 0, run.text[-4000:]
    record = latest_run()
    assert record["status"] == "completed"
    assert all(value is not False for value in record["verification"].values())


# -- the four kinds of fault -----------------------------------------------------------


def destination_killed() -> tuple[int, str]:
    proc = start_playbooks("migrate.yml", extra_vars=THROTTLED)
    wait_for("labsrc", "active", proc)
    os.kill(qemu_pid("labdst"), signal.SIGKILL)
    return finish(proc)


def link_cut() -> tuple[int, str]:
    proc = start_playbooks("migrate.yml", extra_vars={**THROTTLED, "migration_timeout": 20})
    try:
        wait_for("labsrc", "active", proc)
        subprocess.run(["ip", "-n", "labdst", "link", "set", "ens1f0", "down"], check=True)
        return finish(proc)
    finally:
        subprocess.run(["ip", "-n", "labdst", "link", "set", "ens1f0", "up"], check=True)


def timeout() -> tuple[int, str]:
    proc = start_playbooks("migrate.yml", extra_vars={**THROTTLED, "migration_timeout": 3})
    return finish(proc)


def controller_interrupted() -> tuple[int, str]:
    proc = start_playbooks("migrate.yml", extra_vars=THROTTLED)
    wait_for("labsrc", "active", proc)
    proc.send_signal(signal.SIGINT)  # as Ctrl-C would, to ansible-playbook
    rc, said = finish(proc)
    # The module on labsrc sees its controller go; QMP is free once it has stopped.
    deadline = time.monotonic() + 30
    while "Migration status: active" in hmp("labsrc", "info migrate"):
        assert time.monotonic() < deadline, "the migration went on after the controller stopped"
        time.sleep(0.2)
    return rc, said


# fault: (inject it, what the record's error must say)
FAULTS: dict[str, tuple[Callable[[], tuple[int, str]], tuple[str, ...]]] = {
    "destination-killed": (destination_killed, ("failed after",)),
    "link-cut": (link_cut, ("did not finish within 20 s", "no data sent for the last")),
    "timeout": (timeout, ("did not finish within 3 s", "cancelled and the source VM is running")),
    "controller-interrupted": (controller_interrupted, ("The run was interrupted",)),
}


@pytest.mark.parametrize("trial", range(1, TRIALS + 1), ids=lambda n: f"trial{n}")
@pytest.mark.parametrize("kind", list(FAULTS))
def test_a_fault_leaves_the_source_running_and_a_plain_rerun_completes(pair, kind, trial):
    inject, cause = FAULTS[kind]
    ACCOUNT.unlink(missing_ok=True)

    rc, said = inject()

    assert_source_runs_on(rc, said)
    record = latest_run()
    assert record["status"] == ("interrupted" if kind == "controller-interrupted" else "failed")
    for words in cause:
        assert words in record["error"], record["error"]
    if kind == "controller-interrupted":
        account = json.loads(ACCOUNT.read_text())
        assert account["interrupted"] is True
        assert account["status"] == "cancelled" and account["vm_status"] == "running"
        assert account["timeline"]
    else:
        assert record["source_status"] == "running"
    assert_a_plain_rerun_completes()


def test_postcopy_with_the_destination_killed_never_resumes_the_source(pair):
    proc = start_playbooks(
        "migrate.yml",
        extra_vars={
            **THROTTLED,
            "migration_postcopy": True,
            "migration_parameters": {"max-postcopy-bandwidth": 2_000_000},
        },
    )
    wait_for("labsrc", "postcopy-active", proc)
    os.kill(qemu_pid("labdst"), signal.SIGKILL)

    rc, said = finish(proc)

    assert rc != 0, said[-3000:]
    error = latest_run()["error"]
    assert "postcopy migration paused" in error
    assert "the guest runs on the destination (tcp:10.10.1.2:4444)" in error
    assert "must not be resumed" in error
    # Never resumed: not now, nor a little later.
    for _ in range(10):
        assert "VM status: running" not in hmp("labsrc", "info status")
        time.sleep(0.5)
    assert "Migration status: postcopy-paused" in hmp("labsrc", "info migrate")


def test_a_destination_left_listening_elsewhere_is_replaced(pair):
    listen = run_module(
        "labdst",
        "qemu_migrate",
        {
            "socket": "/run/qmigrate/labdst/vm0/qmp.sock",
            "state": "incoming",
            "uri": "tcp:10.10.1.2:4445",
        },
    )
    assert listen.rc == 0, listen.text[-3000:]
    stale = qemu_pid("labdst")

    run = run_playbooks("migrate.yml", extra_vars={"migration_profile": False})

    assert run.rc == 0, run.text[-4000:]
    assert latest_run()["status"] == "completed"
    assert qemu_pid("labdst") != stale


def test_a_stale_pidfile_never_makes_teardown_stop_another_qemu(pair):
    pidfile = Path("/run/qmigrate/labsrc/vm0/qemu.pid")
    own, other = qemu_pid("labsrc"), qemu_pid("labdst")
    pidfile.write_text(f"{other}\n")  # as if labsrc's pid had been reused by labdst's QEMU
    try:
        stop_vms("labsrc")

        assert Path(f"/proc/{other}").exists(), "teardown stopped labdst's QEMU"
        assert "VM status: paused (inmigrate)" in hmp("labdst", "info status")
    finally:
        # labsrc's QEMU is now unknown to the vm role: stop it by its own pid.
        os.kill(own, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{own}").exists():
            assert time.monotonic() < deadline, f"QEMU {own} still runs 30 s after SIGTERM"
            time.sleep(0.2)


def test_a_disk_a_qemu_has_open_is_not_replaced(provisioned, tmp_path):
    dest = Path("/proj/qmigrate-lab/qmigrate-test-disk.img")
    src = tmp_path / "new.img"
    dest.write_bytes(os.urandom(1 << 20))
    src.write_bytes(os.urandom(1 << 20))
    before = hashlib.sha256(dest.read_bytes()).hexdigest()
    pidfile = tmp_path / "qemu.pid"
    subprocess.run(
        ["ip", "netns", "exec", "labsrc", "qemu-system-x86_64", "-machine", "pc", "-accel",
         "tcg", "-m", "64", "-nodefaults", "-display", "none", "-S", "-drive",
         f"file={dest},format=raw,if=none,id=disk0", "-pidfile", str(pidfile), "-daemonize"],
        check=True, timeout=60,
    )  # fmt: skip
    pid = int(pidfile.read_text())
    try:
        run = run_module(
            "localhost",
            "ansible.builtin.include_role",
            {"name": "shared_storage"},
            extra_vars={
                "shared_storage_dir": "/proj/qmigrate-lab",
                "shared_storage_files": [{"src": str(src), "dest": str(dest), "writable": True}],
                "shared_storage_hosts": ["labsrc", "labdst"],
            },
        )

        assert run.rc != 0
        assert f"Not replacing {dest}: running processes have it open (pid {pid}" in run.text
        assert hashlib.sha256(dest.read_bytes()).hexdigest() == before
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        dest.unlink()
