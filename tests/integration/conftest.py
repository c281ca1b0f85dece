"""Fixtures for the integration tests: the embedded lab, built once and shared."""

from __future__ import annotations

import os

import pytest
from ansible.module_utils.qmp import QMPClient, QMPError
from labrun import (
    LAB_NAMESPACES,
    heartbeat_advances,
    lab_namespaces,
    qemu_pid,
    run_playbooks,
    vm_file,
)

# Modules run in this order, cheap failures first: the lab's basics, then what shares one
# lab (migrations, bad input, faults, a ping-pong, profiles, the dirtying guest, two pairs
# at once) and that lab's removal
# (which must stop every VM the pairs left); the API and the command, then the seed's VM
# and the services under load in it (a lab of their own each); then the modules that run
# on the builder alone, the Debian image first (test_seed.py's provisioning reuses it when
# it runs beside them, see scripts/test). Modules not named here run last, in file order.
MODULE_ORDER = (
    "test_foundation.py",
    "test_migration.py",
    "test_bad_input.py",
    "test_faults.py",
    "test_pingpong.py",
    "test_profile.py",
    "test_dirty_workload.py",
    "test_scale.py",
    "test_campaign.py",
    "test_qemu_versions.py",
    "test_tls.py",
    "test_teardown.py",
    "test_api.py",
    "test_seed.py",
    "test_service.py",
    "test_debian_image.py",
    "test_kernel_build.py",
)
# What needs no lab: the builder (localhost) only. Every other module is marked lab (one
# lab per machine: scripts/test runs `-m lab` and `-m "not lab"` side by side).
BUILDER_MODULES = ("test_debian_image.py", "test_kernel_build.py")


@pytest.hookimpl(tryfirst=True)  # before -m selects by the marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return MODULE_ORDER.index(name) if name in MODULE_ORDER else len(MODULE_ORDER)

    items.sort(key=rank)  # stable: each module keeps its own order
    for item in items:
        if item.path.name not in BUILDER_MODULES:
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session", autouse=True)
def _needs_root():
    if os.geteuid() != 0:
        pytest.skip("the embedded lab needs root (network namespaces, TAP devices)")


class SharedLab:
    """The lab up and provisioned, once for every module that asks for it. Built again
    when a test has removed it (test_teardown.py does), so any selection of tests works."""

    def __init__(self) -> None:
        self.provisioned = False

    def ensure(self) -> None:
        if self.provisioned and lab_namespaces() == set(LAB_NAMESPACES):
            return
        run = run_playbooks("lab", "provision")
        assert run.rc == 0, run.text[-4000:]
        self.provisioned = True


@pytest.fixture(scope="session")
def shared_lab():
    lab = SharedLab()
    yield lab
    run_playbooks("teardown")


@pytest.fixture(scope="module")
def provisioned(shared_lab):
    """The lab up and provisioned; VMs as the previous tests left them."""
    shared_lab.ensure()


@pytest.fixture(scope="module")
def launched(provisioned):
    """vm0 running on labsrc and a destination on labdst."""
    run = run_playbooks("launch")
    assert run.rc == 0, run.text[-4000:]
    return run


class Pair:
    """vm0 running on labsrc and a destination waiting on labdst, as launch.yml leaves
    them. A test that left them as launched (the same QEMUs, in the same states, no
    migration started or received, their migration capabilities and parameters as they
    were: QMP says so, and the guest's heartbeat goes on) hands them to the next test; the
    VMs a test touched are stopped and started again, in one playbook run."""

    HOSTS = ("labsrc", "labdst")

    def __init__(self) -> None:
        self.launched: dict[str, dict | None] = {}

    def ensure(self) -> None:
        touched = [
            h
            for h in self.HOSTS
            if not self.launched.get(h) or self.launched[h] != monitor_state(h)
        ]
        if "labsrc" not in touched and not heartbeat_advances("labsrc", 5):
            touched.append("labsrc")
        if not touched:
            return
        run = run_playbooks(
            "tests/integration/playbooks/relaunch.yml",
            extra_vars={"relaunch_hosts": ",".join(touched)},
        )
        assert run.rc == 0, run.text[-4000:]
        self.launched = {h: monitor_state(h) for h in self.HOSTS}


def monitor_state(host: str) -> dict | None:
    """What QMP tells of HOST's vm0 that a test may change; None when it does not run."""
    try:
        with QMPClient(vm_file(host, "qmp.sock"), timeout=5) as qmp:
            return {
                "pid": qemu_pid(host),
                "status": qmp.execute("query-status")["status"],
                "migration": qmp.execute("query-migrate"),
                "capabilities": qmp.execute("query-migrate-capabilities"),
                "parameters": qmp.execute("query-migrate-parameters"),
            }
    except (OSError, ValueError, QMPError):
        return None


@pytest.fixture(scope="session")
def pairs() -> Pair:
    return Pair()


@pytest.fixture
def pair(provisioned, pairs):
    """vm0 on labsrc and a destination waiting on labdst, as launched (see Pair)."""
    pairs.ensure()
