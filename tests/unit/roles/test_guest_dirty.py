"""The initramfs guest's memory-dirtying workload (roles/guest_image/files/qmigrate-dirty).

It is a busybox shell script; here it runs under this machine's static busybox, on a
temporary directory instead of the guest's RAM-backed root. The guest-side run, with
QEMU measuring the dirty rate from outside, is tests/integration/test_dirty_workload.py.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import ROOT

FILES = ROOT / "roles" / "guest_image" / "files"
DIRTY = FILES / "qmigrate-dirty"
BUSYBOX = Path("/bin/busybox")
BLOCK = 64 * 1024
SOURCE_BLOCKS = 64

pytestmark = pytest.mark.skipif(
    not BUSYBOX.is_file(), reason="needs busybox-static (scripts/setup installs it)"
)

REPORT = re.compile(r"^qmigrate-dirty uptime=([0-9.]+) total_kib=(\d+) rate_kib_s=(\d+)$")
END = re.compile(r"^qmigrate-dirty end uptime=([0-9.]+) total_kib=(\d+) dropped_kib=(\d+)$")


@dataclass(frozen=True)
class Run:
    returncode: int
    lines: list[str]
    stderr: str

    @property
    def reports(self) -> list[tuple[float, int, int]]:
        return [
            (float(m[1]), int(m[2]), int(m[3]))
            for m in map(REPORT.match, self.lines)
            if m is not None
        ]

    @property
    def end(self) -> tuple[float, int, int]:
        match = END.match(self.lines[-1])
        assert match is not None, self.lines[-1]
        return float(match[1]), int(match[2]), int(match[3])


def dirty(directory: Path, *args: str) -> Run:
    result = subprocess.run(
        [str(BUSYBOX), "sh", str(DIRTY), "-d", str(directory), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return Run(result.returncode, result.stdout.splitlines(), result.stderr)


def test_reports_start_every_second_and_end(tmp_path: Path) -> None:
    run = dirty(tmp_path, "-r", "4", "-s", "2", "-t", "3")

    assert run.returncode == 0, run.stderr
    assert run.lines[0] == "qmigrate-dirty start rate_kib_s=4096 set_kib=2048 block_kib=64"
    assert len(run.reports) in (2, 3)
    uptimes = [uptime for uptime, _, _ in run.reports] + [run.end[0]]
    assert uptimes == sorted(uptimes)
    totals = [total for _, total, _ in run.reports] + [run.end[1]]
    assert totals == sorted(totals)


def test_writes_what_it_reports_at_the_asked_rate(tmp_path: Path) -> None:
    """Three seconds at 4 MiB/s is 12 MiB; a slow start may lose a tick, never add one."""
    run = dirty(tmp_path, "-r", "4", "-s", "2", "-t", "3")

    _, total_kib, dropped_kib = run.end
    assert total_kib % 64 == 0
    assert 0.8 * 12 * 1024 <= total_kib <= 12 * 1024
    assert total_kib + dropped_kib <= 12 * 1024 + 64
    for _, _, rate in run.reports:
        assert 0.8 * 4096 <= rate <= 1.25 * 4096


def test_every_pass_gives_every_block_new_contents(tmp_path: Path) -> None:
    """Block P, last written in pass N, holds source block (P + N) mod 64: no block keeps
    its contents from one pass to the next, and none is a zero page."""
    run = dirty(tmp_path, "-r", "8", "-s", "1", "-t", "2")
    work = (tmp_path / "qmigrate-dirty.set").read_bytes()
    source = (tmp_path / "qmigrate-dirty.src").read_bytes()

    written = run.end[1] // 64
    set_blocks = len(work) // BLOCK
    passes, position = divmod(written, set_blocks)
    assert set_blocks == 16 and passes >= 1
    blocks = [work[i * BLOCK : (i + 1) * BLOCK] for i in range(set_blocks)]
    sources = [source[i * BLOCK : (i + 1) * BLOCK] for i in range(SOURCE_BLOCKS)]
    assert len(set(sources)) == SOURCE_BLOCKS and bytes(BLOCK) not in sources
    for index, block in enumerate(blocks):
        last_pass = passes if index < position else passes - 1
        assert block == sources[(index + last_pass) % SOURCE_BLOCKS], index


def test_a_rate_beyond_the_machine_is_reported_as_reached_and_dropped(tmp_path: Path) -> None:
    """Asked for far more than a machine writes, it says what it wrote, not what it was
    asked, and drops the backlog instead of bursting to catch up."""
    run = dirty(tmp_path, "-r", "1000000", "-s", "4", "-t", "2")

    _, total_kib, dropped_kib = run.end
    assert run.returncode == 0, run.stderr
    assert dropped_kib > 0
    assert total_kib + dropped_kib <= 2 * 1_000_000 * 1024 + 64
    assert all(rate < 1_000_000 * 1024 for _, _, rate in run.reports)


@pytest.mark.parametrize(
    "args",
    [["-r", "0"], ["-r", "fast"], ["-s", "8"], ["-r", "4", "-s", "-1"], ["-r", "4", "-x", "1"]],
    ids=["zero rate", "word rate", "no rate", "negative set", "unknown option"],
)
def test_rejects_bad_arguments(tmp_path: Path, args: list[str]) -> None:
    run = dirty(tmp_path, *args)

    assert run.returncode == 2
    assert "usage: qmigrate-dirty" in run.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_directory_it_cannot_fill_fails_with_a_message(tmp_path: Path) -> None:
    missing = tmp_path / "missing"

    run = dirty(missing, "-r", "4", "-t", "1")

    assert run.returncode == 1
    assert f"cannot fill 64 MiB in {missing}" in run.stderr


def test_is_valid_busybox_shell() -> None:
    result = subprocess.run(
        [str(BUSYBOX), "sh", "-n", str(DIRTY)], capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stderr
