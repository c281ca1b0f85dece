"""The memory-dirtying workload in the lab's initramfs guest (issue 7): started from the
kernel command line, it reports what it dirtied, QEMU measures the same rate from outside
(calc-dirty-rate, hashing a sample of the guest's pages before and after a window), and the
guest migrates while it runs."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.qmp import QMPClient
from labrun import ROOT, qmp_status, run_playbooks, stop_vms, vm_file

pytestmark = pytest.mark.lab

RATE_MIB_S = 8
# Twice what the measurement window dirties: a page rewritten twice in the window counts
# once, so a window that rewrote the whole set would understate the rate.
SET_MIB = 64
WINDOW_S = 4
# Pages QEMU hashes per GiB of guest RAM (its most): ~128 of them in the part of the
# 256 MiB guest the window dirties, for an estimate good to about a tenth.
SAMPLE_PAGES = 4096
REPORT = re.compile(r"qmigrate-dirty uptime=([0-9.]+) total_kib=(\d+) rate_kib_s=(\d+)")


def dirtying_guest() -> dict:
    append = yaml.safe_load((ROOT / "roles" / "vm" / "defaults" / "main.yml").read_text())[
        "vm_append"
    ]
    return {"vm_append": f"{append} qmigrate.dirty={RATE_MIB_S} qmigrate.dirty_set={SET_MIB}"}


@pytest.fixture(scope="module", autouse=True)
def _dirtying_guests_stopped_after():
    """The next module's pair is the plain guest: launch.yml refuses a VM whose running
    command line (this module's vm_append) differs from the one it would start."""
    yield
    stop_vms()


def reports(host: str) -> list[tuple[float, int, int]]:
    text = Path(vm_file(host, "serial.log")).read_text(errors="replace")
    return [(float(u), int(t), int(r)) for u, t, r in REPORT.findall(text)]


def wait_for_reports(host: str, count: int, timeout: float = 120) -> list[tuple[float, int, int]]:
    deadline = time.monotonic() + timeout
    while len(found := reports(host)) < count and time.monotonic() < deadline:
        time.sleep(0.5)
    return found


def qemu_dirty_rate_mib_s(host: str) -> float:
    """QEMU's own measurement of the guest's dirty rate over WINDOW_S seconds. Sampling,
    not the exact dirty-bitmap mode: QEMU 7.2 under TCG dies on that one."""
    with QMPClient(vm_file(host, "qmp.sock"), timeout=10) as qmp:
        qmp.execute("calc-dirty-rate", {"calc-time": WINDOW_S, "sample-pages": SAMPLE_PAGES})
        deadline = time.monotonic() + WINDOW_S + 30
        while time.monotonic() < deadline:
            result = qmp.execute("query-dirty-rate")
            if result["status"] == "measured":
                return result["dirty-rate"]
            time.sleep(0.2)
    raise AssertionError(f"QEMU on {host} measured no dirty rate: {result}")


def test_guest_dirties_at_the_asked_rate_as_qemu_sees_it(provisioned):
    stop_vms()
    run = run_playbooks("launch", extra_vars=dirtying_guest())
    assert run.rc == 0, run.text[-4000:]

    found = wait_for_reports("labsrc", 3)
    measured = qemu_dirty_rate_mib_s("labsrc")
    after = reports("labsrc")

    assert len(found) >= 3, vm_file("labsrc", "serial.log")
    serial = Path(vm_file("labsrc", "serial.log")).read_text(errors="replace")
    assert f"qmigrate-dirty start rate_kib_s={RATE_MIB_S * 1024} set_kib={SET_MIB * 1024}" in serial
    # The guest's reports while QEMU measured (the first one covers the fill's tail).
    rates = [rate / 1024 for _, _, rate in after[1:]]
    reported = sorted(rates)[len(rates) // 2]
    assert 0.8 * RATE_MIB_S <= reported <= 1.1 * RATE_MIB_S, rates
    # QEMU counts every page written in its window, the heartbeat's and the kernel's too,
    # from a sample.
    assert 0.7 * reported <= measured <= 1.5 * reported, (measured, rates)


def test_dirtying_guest_migrates_and_keeps_dirtying(provisioned):
    stop_vms()
    launched = run_playbooks("launch", extra_vars=dirtying_guest())
    assert launched.rc == 0, launched.text[-4000:]
    assert len(wait_for_reports("labsrc", 2)) >= 2

    run = run_playbooks("migrate_vms", extra_vars={**dirtying_guest(), "migration_profile": False})

    assert run.rc == 0, run.text[-4000:]
    assert qmp_status("labdst") == "running"
    before = reports("labsrc")[-1]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        after = [r for r in reports("labdst") if r[1] > before[1]]
        if len(after) >= 2:
            break
        time.sleep(0.5)
    assert len(after) >= 2, "the workload stopped reporting on the destination"
    assert after[-1][1] > before[1]
