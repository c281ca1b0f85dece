"""The lab's removal: teardown leaves no namespace, route, QEMU or sshd behind. Runs after
the other modules that share the session's lab (conftest.py orders the modules)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from labrun import LAB_NAMESPACES, lab_namespaces, qemu_pid, run_playbooks

pytestmark = pytest.mark.lab


def test_teardown_leaves_nothing_behind(launched):
    pids = [qemu_pid(h) for h in ("labsrc", "labdst")]
    namespaces = {os.stat(f"/run/netns/{name}").st_ino for name in LAB_NAMESPACES}

    run = run_playbooks("teardown")

    assert run.rc == 0, run.text[-4000:]
    assert lab_namespaces() == set()
    assert not [p for p in pids if Path(f"/proc/{p}").exists()]
    routes = subprocess.run(
        ["ip", "route", "show", "10.10.1.0/24"], capture_output=True, text=True, check=True
    ).stdout
    assert routes.strip() == ""
    assert lab_processes(namespaces) == []


def lab_processes(namespaces: set[int]) -> list[str]:
    """Processes left in the lab's network namespaces (NAMESPACES: their inodes, which
    outlive the names while a process holds them), and processes started for the lab
    (its sshd -i sessions, QEMU from /run/qmigrate) in this test's own namespace. Other
    namespaces are not this lab's: another lab may run on the machine."""
    own = os.stat("/proc/self/ns/net").st_ino
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            netns = os.stat(proc / "ns" / "net").st_ino
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        named = "/var/lib/qmigrate/lab/sshd_config" in cmdline or "/run/qmigrate/lab" in cmdline
        if netns in namespaces or (netns == own and named):
            found.append(f"{proc.name}: {cmdline}")
    return found
