"""Fixtures for the integration tests: the embedded lab, built once and shared."""

from __future__ import annotations

import os

import pytest
from labrun import LAB_NAMESPACES, lab_namespaces, run_playbooks

# Modules run in this order, cheap failures first: the lab's basics, then what shares one
# lab (migrations, profiles, the dirtying guest) and that lab's removal; the API and the
# command, then the seed's VM (a lab of their own each); then the modules that run on the
# builder alone, the Debian image first (test_seed.py's provisioning reuses it when it
# runs beside them, see scripts/test). Modules not named here run last, in file order.
MODULE_ORDER = (
    "test_foundation.py",
    "test_migration.py",
    "test_profile.py",
    "test_dirty_workload.py",
    "test_teardown.py",
    "test_api.py",
    "test_seed.py",
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


@pytest.fixture
def pair(provisioned):
    """vm0 freshly booted on labsrc and a destination waiting on labdst: the VMs the
    previous test left are stopped and both started again, in one playbook run."""
    run = run_playbooks("tests/integration/playbooks/relaunch.yml")
    assert run.rc == 0, run.text[-4000:]
