"""Issue 17's QEMU versions on the embedded lab: Debian 12's QEMU 7.2 and its backported
10.0 side by side on one machine, a migration on 10.0, one from 7.2 to 10.0 and back with
the machine type pinned, and the combinations QEMU cannot migrate refused with the reason
while the source runs on."""

from __future__ import annotations

import json

import pytest
from labrun import ROOT, heartbeat_advances, hmp, run_playbooks, stop_vms

pytestmark = pytest.mark.lab

LATEST = ROOT / "results" / "latest" / "run.json"
# These tests are about which QEMU runs; the profile's probes say nothing more here.
UNPROFILED = {"migration_profile": False}
MIXED = {"qmigrate_qemu_version": {"labsrc": "distro", "labdst": "backports"}}
PINNED = {"vm_machine": "pc-i440fx-7.2"}


def latest_run() -> dict:
    return json.loads(LATEST.read_text())


@pytest.fixture
def fresh_vms(provisioned):
    """No VM runs when the test starts (each starts its QEMUs), nor when it ends: the
    next test relaunches the distribution's QEMU."""
    stop_vms()
    yield
    stop_vms()


def migrate(**extra) -> dict:
    run = run_playbooks("migrate.yml", extra_vars={**UNPROFILED, **extra})
    assert run.rc == 0, run.text[-4000:]
    record = latest_run()
    assert record["status"] == "completed"
    assert all(record["verification"].values()), record["verification"]
    return record


def test_a_migration_on_qemu_10(fresh_vms):
    record = migrate(qmigrate_qemu_version="backports")

    versions = record["qemu_versions"]
    for side in ("source", "destination"):
        assert versions[side]["version"].startswith("10.0."), versions
        assert "bpo12" in versions[side]["package"]
        assert versions[side]["machine"] == "pc-i440fx-10.0"
    assert "machine_types" not in versions["destination"]


def test_from_7_2_to_10_0_and_back_with_the_machine_type_pinned(fresh_vms):
    there = migrate(**MIXED, **PINNED)

    versions = there["qemu_versions"]
    assert versions["source"]["version"].startswith("7.2.")
    assert versions["destination"]["version"].startswith("10.0.")
    assert versions["source"]["machine"] == versions["destination"]["machine"] == "pc-i440fx-7.2"
    assert there["verification"]["heartbeat_continues"]

    back = migrate(**MIXED, **PINNED, qmigrate_reverse=True)

    assert back["source"] == "labdst" and back["destination"] == "labsrc"
    assert back["qemu_versions"]["source"]["version"].startswith("10.0.")
    assert back["qemu_versions"]["destination"]["version"].startswith("7.2.")
    assert back["verification"]["heartbeat_continues"]


def test_two_machine_types_are_refused_and_the_source_runs_on(fresh_vms):
    """Unpinned, 7.2's pc is pc-i440fx-7.2 and 10.0's pc-i440fx-10.0: refused before the
    source changes, naming the type both know."""
    run = run_playbooks("migrate.yml", extra_vars={**UNPROFILED, **MIXED})

    assert run.rc != 0
    assert "runs machine type pc-i440fx-7.2 (QEMU 7.2." in run.text
    assert "waits with pc-i440fx-10.0 (QEMU 10.0." in run.text
    assert "vm_machine=pc-i440fx-7.2" in run.text
    assert "VM status: running" in hmp("labsrc", "info status")
    assert heartbeat_advances("labsrc")
    record = latest_run()
    assert record["status"] == "failed"
    assert record["qemu"].get("status") in (None, "none")  # no migration was started


def test_a_capability_one_side_lacks_is_refused_naming_its_qemu(fresh_vms):
    """compress is gone in 10.0 (9.1 removed it): the destination refuses it as it is told
    to listen, before the source changes."""
    run = run_playbooks(
        "../migrate",
        extra_vars={**UNPROFILED, **MIXED, **PINNED, "migration_capabilities": {"compress": True}},
    )

    assert run.rc != 0
    assert "compress not supported by this QEMU (10.0." in run.text
    assert "VM status: running" in hmp("labsrc", "info status")
    assert heartbeat_advances("labsrc")
