"""Issue 3 end to end: migrations on the embedded lab with real QEMU, and how they fail."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from labrun import (
    ROOT,
    heartbeat_advances,
    hmp,
    qemu_pid,
    run_module,
    run_playbooks,
    socat,
    stop_vms,
)

pytestmark = pytest.mark.lab

LATEST = ROOT / "results" / "latest" / "run.json"
# The lab profiles every migration (inventory/lab). These tests are about the migration
# itself and spare it the probes' link test and 10 s window; test_profile.py profiles.
UNPROFILED = {"migration_profile": False}
# Slow enough that a 256 MiB guest takes tens of seconds to migrate; too slow for the
# probes' window to say anything anyway.
THROTTLED = {**UNPROFILED, "migration_max_bandwidth": 4_000_000}


def latest_run() -> dict:
    return json.loads(LATEST.read_text())


def assert_source_unharmed(rc: int) -> None:
    """The migration failed, and the source VM runs on with its guest."""
    assert rc != 0
    assert "VM status: running" in hmp("labsrc", "info status")
    assert heartbeat_advances("labsrc")
    assert latest_run()["status"] == "failed"


def test_destination_not_started(pair):
    stop_vms("labdst")

    run = run_playbooks("migrate_vms")

    assert "cannot reach the monitor of the VM at /run/qmigrate/labdst/vm0" in run.text
    assert_source_unharmed(run.rc)


def test_destination_not_waiting_for_a_migration(pair):
    stop_vms("labdst")
    started = run_module(
        "labdst",
        "ansible.builtin.include_role",
        {"name": "vm"},
        extra_vars={
            "vm_kernel": "/proj/qmigrate-lab/qmigrate/bzImage",
            "vm_initrd": "/proj/qmigrate-lab/qmigrate/initramfs.cpio.gz",
            "vm_extra_args": ["-S"],  # created but never started: state prelaunch
        },
    )
    assert started.rc == 0, started.text[-3000:]

    run = run_playbooks("migrate_vms")

    assert "is prelaunch, not waiting for a migration (inmigrate)" in run.text
    assert_source_unharmed(run.rc)


def test_a_uri_qemu_refuses_fails_the_run_and_keeps_the_source(pair):
    # Allowed past the check of every input, refused by the destination's QEMU.
    run = run_playbooks(
        "migrate_vms",
        extra_vars={"migration_uri": "bogus:10.10.1.2:4444", "migration_allow_any_uri": True},
    )

    assert "refused to listen on bogus:10.10.1.2:4444" in run.text
    assert_source_unharmed(run.rc)


def test_check_mode_predicts_without_migrating(pair):
    run = run_playbooks("migrate_vms", options=("--check",))

    assert run.rc == 0, run.text[-4000:]
    assert "would migrate from labsrc to labdst over tcp:10.10.1.2:4444" in run.text
    assert "VM status: paused (inmigrate)" in hmp("labdst", "info status")
    assert "Migration status" not in hmp("labsrc", "info migrate")


def test_check_mode_of_migrate_yml_tells_the_destination_nothing(pair):
    run = run_playbooks("migrate.yml", extra_vars=UNPROFILED, options=("--check",))

    assert run.rc == 0, run.text[-4000:]
    checks = run.task_results("Tell whether this VM already runs as asked")
    assert checks and not any(c.get("listening") for c in checks)
    assert "VM status: paused (inmigrate)" in hmp("labdst", "info status")
    assert "socket address" not in hmp("labdst", "info migrate")


def test_postcopy_after_one_pass(pair):
    run = run_playbooks("migrate_vms", extra_vars={**THROTTLED, "migration_postcopy": True})

    assert run.rc == 0, run.text[-4000:]
    record = latest_run()
    assert record["postcopy_at"] is not None
    assert record["qemu"]["postcopy_bytes"] > 0
    assert all(record["verification"].values())


def module_result(run, host: str) -> dict:
    return run.reports[0]["plays"][0]["tasks"][0]["hosts"][host]


def start_in_background(capabilities: dict) -> None:
    """The destination listens, and a throttled migration starts without waiting."""
    uri = "tcp:10.10.1.2:4444"
    listen = run_module(
        "labdst",
        "qemu_migrate",
        {
            "socket": "/run/qmigrate/labdst/vm0/qmp.sock",
            "state": "incoming",
            "uri": uri,
            "capabilities": capabilities,
        },
    )
    assert listen.rc == 0, listen.text[-3000:]
    started = run_module(
        "labsrc",
        "qemu_migrate",
        {
            "socket": "/run/qmigrate/labsrc/vm0/qmp.sock",
            "uri": uri,
            "wait": False,
            "capabilities": capabilities,
            "parameters": {"max-bandwidth": 4_000_000},
        },
    )
    assert started.rc == 0, started.text[-3000:]
    assert module_result(started, "labsrc")["status"] in ("setup", "active")


def test_cancel_on_demand_keeps_the_source(pair):
    start_in_background({})

    cancel = run_module(
        "labsrc",
        "qemu_migrate",
        {"socket": "/run/qmigrate/labsrc/vm0/qmp.sock", "state": "cancelled"},
    )

    assert cancel.rc == 0, cancel.text[-3000:]
    assert module_result(cancel, "labsrc")["status"] == "cancelled"
    assert "VM status: running" in hmp("labsrc", "info status")
    assert heartbeat_advances("labsrc")


def test_postcopy_on_demand(pair):
    start_in_background({"postcopy-ram": True})
    socket = "/run/qmigrate/labsrc/vm0/qmp.sock"

    switch = run_module("labsrc", "qemu_migrate", {"socket": socket, "state": "postcopy"})
    finish = run_module(
        "labsrc", "qemu_migrate", {"socket": socket, "uri": "tcp:10.10.1.2:4444", "timeout": 300}
    )

    assert switch.rc == 0, switch.text[-3000:]
    assert finish.rc == 0, finish.text[-3000:]
    assert module_result(finish, "labsrc")["stats"]["postcopy_bytes"] > 0
    assert "VM status: running" in hmp("labdst", "info status")
    assert heartbeat_advances("labdst")


def test_migrate_yml_end_to_end(pair):
    run = run_playbooks("migrate.yml", extra_vars=UNPROFILED)

    assert run.rc == 0, run.text[-4000:]
    record = latest_run()
    assert record["status"] == "completed"
    assert record["verification"] and all(record["verification"].values())
    assert record["timeline"] and record["qemu"]["total_time_ms"] > 0
    monitor = "/run/qmigrate/labsrc/vm0/monitor.sock"
    assert "Migration status: completed" in socat(monitor, "info migrate")
    # The waiting destination was told to listen by the state check, in the same module
    # run, with what the migration set: the migration did not tell it again.
    checks = run.task_results("Tell whether this VM already runs as asked")
    told = [c["listening"] for c in checks if c.get("listening")]
    assert told == [
        {
            "uri": "tcp:10.10.1.2:4444",
            "capabilities": record["capabilities_requested"],
            "parameters": record["parameters_requested"],
        }
    ]
    listen = run.task_results("Let the destination listen, or find the guest already there")
    assert listen and all(result.get("skipped") for result in listen)


def test_second_run_reports_the_vm_already_migrated(provisioned):
    destination = qemu_pid("labdst")
    migrated = latest_run()

    run = run_playbooks("migrate.yml")

    assert run.rc == 0, run.text[-4000:]
    record = latest_run()
    assert record["already_migrated"] is True
    assert qemu_pid("labdst") == destination
    # Verified from what the state check found, in its one module run per host: the
    # source's account of the earlier migration and the guest's heartbeat on the
    # destination; neither host was asked again.
    assert record["qemu"] == migrated["qemu"] and record["source_status"] == "postmigrate"
    assert record["heartbeat"]["continues"] and all(record["verification"].values())
    assert record["heartbeat"]["source_last"] == migrated["heartbeat"]["source_last"]
    for again in (
        "Migrate the VM and record its progress",
        "Check that the guest runs on the destination and goes on",
    ):
        results = run.task_results(again)
        assert results and all(result.get("skipped") for result in results), again


def test_round_trip(provisioned):
    back = run_playbooks("migrate.yml", extra_vars={**UNPROFILED, "qmigrate_reverse": True})
    assert back.rc == 0, back.text[-4000:]
    way_back = latest_run()

    forth = run_playbooks("migrate.yml", extra_vars=UNPROFILED)

    assert forth.rc == 0, forth.text[-4000:]
    again = latest_run()
    assert (way_back["source"], way_back["destination"]) == ("labdst", "labsrc")
    assert (again["source"], again["destination"]) == ("labsrc", "labdst")
    assert all(way_back["verification"].values()) and all(again["verification"].values())
    assert again["heartbeat"]["destination_first"] > way_back["heartbeat"]["destination_first"]


def test_hand_started_vms_over_the_seeds_monitor(provisioned, tmp_path):
    """VMs started by hand as in the seed, with only -monitor unix:, migrate over HMP."""
    stop_vms()
    pids = []

    def start(host: str, *extra: str) -> str:
        monitor = str(tmp_path / f"{host}-monitor")
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                host,
                "qemu-system-x86_64",
                "-accel",
                "tcg",
                "-cpu",
                "max",
                "-smp",
                "2",
                "-m",
                "256M",
                "-kernel",
                "/proj/qmigrate-lab/qmigrate/bzImage",
                "-initrd",
                "/proj/qmigrate-lab/qmigrate/initramfs.cpio.gz",
                "-append",
                "console=ttyS0 earlyprintk=serial net.ifnames=0",
                "-display",
                "none",
                "-serial",
                f"file:{tmp_path / host}.log",
                "-netdev",
                "tap,id=ens1f0,ifname=tap0,script=no,downscript=no",
                "-device",
                "virtio-net,netdev=ens1f0,mac=52:55:00:d1:55:01",
                "-monitor",
                f"unix:{monitor},server,nowait",
                "-pidfile",
                f"{tmp_path / host}.pid",
                "-daemonize",
                *extra,
            ],
            check=True,
            timeout=60,
        )
        pids.append(int(Path(f"{tmp_path / host}.pid").read_text()))
        return monitor

    try:
        source = start("labsrc")
        destination = start("labdst", "-incoming", "defer")
        uri = "tcp:10.10.1.2:4444"

        listen = run_module(
            "labdst", "qemu_migrate", {"socket": destination, "state": "incoming", "uri": uri}
        )
        migrate = run_module("labsrc", "qemu_migrate", {"socket": source, "uri": uri})

        assert listen.rc == 0, listen.text[-3000:]
        assert migrate.rc == 0, migrate.text[-3000:]
        result = module_result(migrate, "labsrc")
        assert (result["protocol"], result["status"]) == ("hmp", "completed")
        assert result["vm_status"] == "postmigrate"
        assert "VM status: running" in socat(destination, "info status")
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        # Gone before the next test starts its VMs on the same TAP devices.
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{pid}").exists() for pid in pids):
            assert time.monotonic() < deadline, f"QEMU {pids} still runs 30 s after SIGTERM"
            time.sleep(0.2)
