"""Several VM pairs in one run (issue 7, qmigrate_vm_count): migrate.yml starts vm1 beside
vm0 on each hypervisor, with its own TAP device, MAC, address and migration port, and
migrates both at once; a count it cannot serve is refused before anything is built.

The pairs are left running: test_teardown.py, next, checks that teardown stops them all."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from ansible.module_utils.qmp import QMPClient
from labrun import run_playbooks, stop_vms

pytestmark = pytest.mark.lab

# ~105 MiB at 30 MB/s: each migration takes seconds, so the two must overlap in time
# (started one after the other, they would not).
TWO = {"qmigrate_vm_count": 2, "migration_profile": False, "migration_max_bandwidth": 30_000_000}


def qemu_pidfiles() -> dict[str, float]:
    """Every VM's pidfile under /run/qmigrate, with its modification time."""
    return {str(p): p.stat().st_mtime for p in Path("/run/qmigrate").glob("*/*/qemu.pid")}


def stop_pairs() -> None:
    """Stop vm0 and vm1 on both hypervisors, so both pairs start fresh."""
    stop_vms(names=("vm0", "vm1"))


def plays(run) -> list[str]:
    return [play["play"]["name"] for doc in run.reports for play in doc["plays"]]


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        ({"qmigrate_vm_count": 0}, "qmigrate_vm_count: 0 is out of range (at least 1, at most 32)"),
        (
            {"qmigrate_vm_count": 2, "qmigrate_profile": "seed"},
            "qmigrate_vm_count: 2: more than one VM needs the minimal profile",
        ),
    ],
    ids=["zero", "seed-profile"],
)
def test_a_count_it_cannot_serve_is_refused_before_anything_is_built(
    provisioned, extra_vars, message
):
    before = qemu_pidfiles()

    run = run_playbooks("migrate.yml", extra_vars=extra_vars)

    assert run.rc != 0
    assert message in run.text, run.text[-3000:]
    assert plays(run) == ["Check every input of the run"]
    assert qemu_pidfiles() == before


def test_two_pairs_migrate_side_by_side_in_one_run(provisioned, tmp_path):
    stop_pairs()

    run = run_playbooks("migrate.yml", extra_vars={**TWO, "qmigrate_results_dir": str(tmp_path)})

    assert run.rc == 0, run.text[-4000:]
    records = {r["vm"]: r for r in (json.loads(p.read_text()) for p in tmp_path.glob("*/run.json"))}
    assert sorted(records) == ["vm0", "vm1"]
    for vm, port in (("vm0", 4444), ("vm1", 4445)):
        record = records[vm]
        assert record["status"] == "completed", record["error"]
        assert record["uri"] == f"tcp:10.10.1.2:{port}"
        assert record["verification"] and all(record["verification"].values()), record
        with QMPClient(f"/run/qmigrate/labdst/{vm}/qmp.sock", timeout=5) as qmp:
            assert qmp.execute("query-status")["status"] == "running"
    # Side by side: each began before the other ended.
    spans = [
        (r["migrate_started_epoch"], r["migrate_started_epoch"] + r["qemu"]["total_time_ms"] / 1000)
        for r in records.values()
    ]
    assert max(start for start, _ in spans) < min(end for _, end in spans), spans
    # vm1 is a machine of its own: its own TAP device, MAC and address.
    argv = Path("/proc", Path("/run/qmigrate/labdst/vm1/qemu.pid").read_text().strip(), "cmdline")
    args = argv.read_bytes().decode().split("\0")
    assert "tap,id=ens1f0,ifname=tap2,script=no,downscript=no" in args
    assert "virtio-net,netdev=ens1f0,mac=52:55:00:d1:55:02" in args
    assert any("qmigrate.ip=10.10.1.101/24" in a for a in args)
    assert os.path.exists("/run/qmigrate/labsrc/vm1/qemu.pid")
