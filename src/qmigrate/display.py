"""What the CLI shows people: a progress bar, a run's summary, tables. Plain text and two
ANSI sequences (carriage return, erase line); no dependency."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Sequence
from typing import Any, TextIO

from qmigrate.api import LabStatus
from qmigrate.results import MigrationResult, RunSummary

MIB = 1024 * 1024
BAR_WIDTH = 20
_ERASE_LINE = "\x1b[K"


def mib(size: float | None) -> str:
    return "?" if size is None else f"{size / MIB:.0f}"


def mib_precise(size: float | None) -> str:
    return "-" if size is None else f"{size / MIB:.1f} MiB"


def rate(mbps: float | None) -> str:
    if mbps is None:
        return "? Mbit/s"
    return f"{mbps / 1000:.1f} Gbit/s" if mbps >= 1000 else f"{mbps:.0f} Mbit/s"


def milliseconds(value: float | None) -> str:
    return "-" if value is None else f"{value} ms"


def done_fraction(point: dict[str, Any]) -> float:
    """How much of the guest's RAM has arrived: (total - remaining) / total."""
    if point.get("status") == "completed":
        return 1.0
    total, remaining = point.get("total"), point.get("remaining")
    if not total or remaining is None:
        return 0.0
    return min(max((total - remaining) / total, 0.0), 1.0)


def progress_line(point: dict[str, Any], width: int = BAR_WIDTH) -> str:
    """One progress point as a bar: ``[##########..........]  52%  active  140/268 MiB
    sent, 128 MiB left  2.3 Gbit/s``. Percent and bar are floored: 100% means done. The
    phase comes before the figures, so a narrow terminal cuts the throughput first."""
    fraction = done_fraction(point)
    filled = int(fraction * width)
    bar = "#" * filled + "." * (width - filled)
    sizes = (
        f"{mib(point.get('transferred'))}/{mib(point.get('total'))} MiB sent, "
        f"{mib(point.get('remaining'))} MiB left"
    )
    status = point.get("status") or "?"
    return f"[{bar}] {int(fraction * 100):3d}%  {status}  {sizes}  {rate(point.get('mbps'))}"


def _verdict(passed: bool | None) -> str:
    return "not checked" if passed is None else "yes" if passed else "NO"


def summary_table(result: MigrationResult) -> str:
    """A run's summary for people, one figure a line."""
    status = result.status + (" (already migrated)" if result.already_migrated else "")
    rows = [
        ("run", result.run_id),
        ("status", status),
        ("route", f"{result.vm}: {result.source} -> {result.destination} over {result.uri}"),
    ]
    if result.error:
        rows.append(("error", result.error))
    rows += [
        ("total time", milliseconds(result.total_time_ms)),
        ("downtime", milliseconds(result.downtime_ms)),
        ("setup time", milliseconds(result.setup_time_ms)),
        ("transferred", mib_precise(result.transferred_bytes)),
        ("throughput", "-" if result.throughput_mbps is None else rate(result.throughput_mbps)),
        ("dirty syncs", "-" if result.dirty_sync_count is None else str(result.dirty_sync_count)),
    ]
    width = max((len(name) for name in result.verification), default=0)
    for index, (name, passed) in enumerate(result.verification.items()):
        rows.append(("verification" if index == 0 else "", f"{name:<{width}}  {_verdict(passed)}"))
    rows.append(("record", str(result.record_path or "-")))
    return "\n".join(f"{name:<14}{value}".rstrip() for name, value in rows)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    """Columns padded to their widest cell; the columns in RIGHT aligned right."""
    columns = zip(headers, *rows, strict=True)
    widths = [max(len(str(cell)) for cell in column) for column in columns]

    def line(cells: Sequence[str]) -> str:
        padded = [
            str(cell).rjust(width) if index in right else str(cell).ljust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), *(line(row) for row in rows)])


def runs_table(runs: Sequence[RunSummary]) -> str:
    """Past runs, one a line, with their key figures."""
    if not runs:
        return "no runs recorded"
    headers = ["RUN", "STATUS", "ROUTE", "TOTAL ms", "DOWN ms", "MiB", "Mbit/s", "VERIFIED"]
    rows = [
        [
            run.run_id,
            run.status + (" (already)" if run.already_migrated else ""),
            f"{run.source}->{run.destination}",
            "-" if run.total_time_ms is None else str(run.total_time_ms),
            "-" if run.downtime_ms is None else str(run.downtime_ms),
            "-" if run.transferred_bytes is None else f"{run.transferred_bytes / MIB:.1f}",
            "-" if run.throughput_mbps is None else f"{run.throughput_mbps:.1f}",
            {True: "yes", False: "NO", None: "-"}[run.verified],
        ]
        for run in runs
    ]
    return table(headers, rows, right={3, 4, 5, 6})


def lab_status_text(status: LabStatus) -> str:
    """The lab's namespaces and VMs, one a line."""
    if not status.namespaces:
        return f"{status.inventory}: no embedded lab in this inventory"
    present = status.namespaces.values()
    state = "up" if status.up else "partly up" if any(present) else "down"
    lines = [f"lab {state} ({status.inventory})"]
    lines += [
        f"  namespace {name:<12} {'present' if exists else 'absent'}"
        for name, exists in status.namespaces.items()
    ]
    lines += [f"  vm on     {host:<12} {vm_state}" for host, vm_state in status.vms.items()]
    return "\n".join(lines)


class StatusLine:
    """One line redrawn in place on a terminal; nothing at all elsewhere (a log or a pipe
    gets the summary only). Safe to call from two threads (task names come from
    ansible-runner's, progress from the caller's)."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.shown = False
        self._lock = threading.Lock()

    def show(self, text: str) -> None:
        if not self.enabled:
            return
        # A line wider than the terminal would wrap, and \r would redraw only its tail.
        columns = shutil.get_terminal_size().columns - 1
        with self._lock:
            self.stream.write("\r" + text[:columns] + _ERASE_LINE)
            self.stream.flush()
            self.shown = True

    def clear(self) -> None:
        """Erase the line (a task name that is done)."""
        with self._lock:
            if self.shown:
                self.stream.write("\r" + _ERASE_LINE)
                self.stream.flush()
                self.shown = False

    def keep(self) -> None:
        """Leave the line as it stands (the last progress bar) and go on below it."""
        with self._lock:
            if self.shown:
                self.stream.write("\n")
                self.stream.flush()
                self.shown = False
