"""Issue 2 end to end: lab, provision and launch on the embedded lab, real QEMU."""

from __future__ import annotations

import subprocess

import pytest
from ansible.module_utils.qmp import HMPClient
from labrun import (
    heartbeat_advances,
    lab_namespaces,
    last_heartbeat,
    qemu_pid,
    qmp_status,
    run_module,
    run_playbooks,
    socat,
    vm_file,
)

pytestmark = pytest.mark.lab


def test_source_runs_and_destination_waits(launched):
    assert qmp_status("labsrc") == "running"
    assert qmp_status("labdst") == "inmigrate"


def test_guest_heartbeat_advances(launched):
    assert last_heartbeat("labsrc") > 0
    assert heartbeat_advances("labsrc")


def test_guest_answers_ping_from_the_client(launched):
    ping = subprocess.run(
        ["ip", "netns", "exec", "labclient", "ping", "-c", "3", "-W", "2", "10.10.1.100"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert ping.returncode == 0, ping.stdout + ping.stderr


def test_lab_sessions_have_a_home_of_their_own(launched):
    # Not the machine's /root, whose shell start-up files would run for every module sent.
    run = run_module("lab", "ansible.builtin.command", {"argv": ["printenv", "HOME"]})

    assert run.rc == 0, run.text[-3000:]
    homes = {
        host: result["stdout"]
        for doc in run.reports
        for play in doc["plays"]
        for task in play["tasks"]
        for host, result in task["hosts"].items()
    }
    assert homes == {h: "/var/lib/qmigrate/lab/home" for h in ("labsrc", "labdst", "labclient")}


def test_seed_monitor_socket_answers_socat(launched):
    out = socat(vm_file("labsrc", "monitor.sock"), "info status")

    assert "VM status: running" in out


def test_hmp_client_reads_the_destination(launched):
    with HMPClient(vm_file("labdst", "monitor.sock"), timeout=5) as hmp:
        assert "inmigrate" in hmp.command("info status")


def test_second_run_changes_nothing(launched):
    pids = {h: qemu_pid(h) for h in ("labsrc", "labdst")}

    again = run_playbooks("lab", "provision", "launch")

    assert again.rc == 0, again.text[-4000:]
    assert again.changed and set(again.changed.values()) == {0}, again.changed
    assert {h: qemu_pid(h) for h in pids} == pids


def test_unknown_accelerator_is_refused(launched):
    run = run_playbooks("provision", extra_vars={"qemu_accelerator": "warp"})

    assert run.rc != 0
    assert "qemu_accelerator" in run.text and "warp" in run.text


def test_memory_of_lots_is_refused_and_the_vms_stay(launched):
    pids = {h: qemu_pid(h) for h in ("labsrc", "labdst")}

    run = run_playbooks("launch", extra_vars={"vm_memory": "lots"})

    assert run.rc != 0
    assert "vm_memory" in run.text
    assert {h: qemu_pid(h) for h in pids} == pids
    assert qmp_status("labsrc") == "running"


def test_missing_kernel_is_refused(launched):
    run = run_playbooks("launch", extra_vars={"qmigrate_guest_kernel": "/nonexistent/bzImage"})

    assert run.rc != 0
    assert "vm_kernel: /nonexistent/bzImage does not exist" in run.text


def test_lab_subnet_overlapping_a_route_is_refused(launched):
    before = lab_namespaces()

    # Private, so the check of every input lets it through; it holds the lab's own subnet,
    # whose unreachable route the machine has while the lab is up.
    run = run_playbooks("lab", extra_vars={"lab_subnet": "10.10.0.0/16"})

    assert run.rc != 0
    assert "lab_subnet 10.10.0.0/16 overlaps routes" in run.text
    assert lab_namespaces() == before
