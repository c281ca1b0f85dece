"""Issue 6 end to end: the Python API and the qmigrate command on the embedded lab.

The tests run in file order on one lab and hand the VM on: forward (labsrc -> labdst),
bad input that changes nothing, a refused capability on the way back, the way back from
the command in a terminal, and forward again watching progress through the API.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from labrun import ROOT, lab_namespaces, qmp_status

from qmigrate import api
from qmigrate.errors import BadInput, MigrationFailed

pytestmark = pytest.mark.lab

RESULTS = ROOT / "results"
# 20 MB/s: the guest's ~100 MiB take several seconds, long enough to watch.
THROTTLE = 20_000_000
# The lab profiles every migration (inventory/lab); these tests are about the API and the
# command, and spare their migrations the probes' link test and 10 s window.
UNPROFILED = {"migration_profile": False}
BAR = re.compile(r"^\[[#.]+\]\s+(\d+)%\s+(\S+)")


@pytest.fixture(scope="module", autouse=True)
def lab():
    api.lab_up()
    api.provision()
    yield
    api.lab_down()
    assert not api.lab_status().up
    assert lab_namespaces() == set()


def record_of(result) -> dict:
    return json.loads(Path(result.record_path).read_text())


def test_migration_returns_the_figures_run_json_holds():
    result = api.migrate(extra_vars=UNPROFILED)

    written = record_of(result)
    assert result.status == "completed", result.error
    assert not result.already_migrated
    assert result.verified is True
    assert result.record == written
    assert result.record_path == (RESULTS / result.run_id / "run.json").resolve()
    assert (RESULTS / "latest").resolve() == result.record_path.parent
    assert (result.source, result.destination, result.uri) == (
        written["source"],
        written["destination"],
        written["uri"],
    )
    for figure in (
        "total_time_ms",
        "downtime_ms",
        "setup_time_ms",
        "transferred_bytes",
        "throughput_mbps",
        "dirty_sync_count",
    ):
        assert getattr(result, figure) == written["qemu"][figure], figure
    assert result.verification == written["verification"]
    assert api.runs()[-1].run_id == result.run_id
    assert api.report() == written
    status = api.lab_status()
    assert status.up
    assert status.vms == {"labsrc": "postmigrate", "labdst": "running"}


def test_bad_variable_raises_bad_input_naming_it_and_changes_nothing():
    latest = (RESULTS / "latest").resolve()

    with pytest.raises(BadInput) as caught:
        api.migrate(extra_vars={"migration_max_bandwidth": "lots"})

    assert caught.value.variables == ("migration_max_bandwidth",)
    assert "migration_max_bandwidth" in str(caught.value)
    assert (RESULTS / "latest").resolve() == latest  # no run was recorded
    assert (qmp_status("labsrc"), qmp_status("labdst")) == ("postmigrate", "running")


def test_a_capability_this_qemu_lacks_is_a_failed_migration_naming_it():
    # The way back: labsrc, postmigrate, is restarted as the destination; the module checks
    # the capability against that QEMU, and the role records the run as failed. (A name no
    # QEMU knows is refused before anything, as bad input; mapped-ram is QEMU 9.0's.)
    with pytest.raises(MigrationFailed) as caught:
        api.migrate(reverse=True, capabilities={"mapped-ram": True})

    failed = caught.value.result
    assert "mapped-ram" in str(caught.value)
    assert failed is not None
    assert failed.status == "failed"
    assert "capabilities: mapped-ram not supported" in failed.error
    assert (failed.source, failed.destination) == ("labdst", "labsrc")
    assert record_of(failed)["status"] == "failed"
    assert (qmp_status("labdst"), qmp_status("labsrc")) == ("running", "inmigrate")


def qmigrate_command() -> list[str]:
    """The installed command beside this Python, else the same main() as a module."""
    script = Path(sys.executable).parent / "qmigrate"
    return [str(script)] if script.exists() else [sys.executable, "-m", "qmigrate"]


def run_in_a_terminal(argv: list[str], timeout: float) -> tuple[int, str]:
    """ARGV on a pseudo-terminal 160 columns wide; its exit status and all it wrote."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen(
        argv, stdin=terminal, stdout=terminal, stderr=terminal, cwd=ROOT, env=env
    )
    os.close(terminal)
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 1)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the command has exited and closed the terminal
                break
            if not chunk:
                break
            output += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(controller)
    return proc.wait(timeout=30), output.decode(errors="replace")


def test_command_in_a_terminal_shows_the_bar_advancing_then_the_summary():
    argv = [*qmigrate_command(), "--project", str(ROOT), "migrate", "--reverse"]
    argv += ["--max-bandwidth", str(THROTTLE), "-e", "migration_profile=false"]

    code, output = run_in_a_terminal(argv, timeout=900)

    lines = output.replace("\r", "\n").splitlines()
    bars = [(index, BAR.match(line)) for index, line in enumerate(lines) if BAR.match(line)]
    percentages = {int(match.group(1)) for _, match in bars}
    assert code == 0, output[-3000:]
    assert len(percentages) >= 2, output[-3000:]
    assert min(percentages) < 100
    assert {match.group(2) for _, match in bars} >= {"active"}
    summary = lines.index(next(line for line in lines if line.startswith("status ")))
    assert summary > bars[-1][0]
    assert lines[summary].split()[1] == "completed"
    latest = json.loads((RESULTS / "latest" / "run.json").read_text())
    assert (latest["source"], latest["destination"]) == ("labdst", "labsrc")
    assert latest["parameters_requested"]["max-bandwidth"] == THROTTLE


def test_progress_reaches_the_caller_while_ram_moves():
    points: list[dict] = []

    result = api.migrate(max_bandwidth=THROTTLE, on_progress=points.append, extra_vars=UNPROFILED)

    assert result.status == "completed", result.error
    assert (result.source, result.destination) == ("labsrc", "labdst")
    active = [point for point in points if point["status"] == "active"]
    assert len({point["remaining"] for point in active}) >= 2
    assert all(point["total"] for point in active)
    assert points[-1] == result.record["timeline"][-1]
