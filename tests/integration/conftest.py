"""Fixtures for the integration tests: the embedded lab, launched once per module."""

from __future__ import annotations

import os

import pytest
from labrun import run_playbooks, stop_vms


@pytest.fixture(scope="session", autouse=True)
def _needs_root():
    if os.geteuid() != 0:
        pytest.skip("the embedded lab needs root (network namespaces, TAP devices)")


@pytest.fixture(scope="module")
def launched():
    """The lab up, provisioned, vm0 running on labsrc and a destination on labdst."""
    run = run_playbooks("lab", "provision", "launch")
    assert run.rc == 0, run.text[-4000:]
    yield run
    run_playbooks("teardown")


@pytest.fixture(scope="module")
def provisioned():
    """The lab up and provisioned, no VM asked for."""
    run = run_playbooks("lab", "provision")
    assert run.rc == 0, run.text[-4000:]
    yield
    run_playbooks("teardown")


@pytest.fixture
def pair(provisioned):
    """vm0 freshly booted on labsrc and a destination waiting on labdst."""
    stop_vms()
    run = run_playbooks("launch")
    assert run.rc == 0, run.text[-4000:]
