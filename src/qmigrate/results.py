"""Migration runs as typed results, from the run record the migration role writes.

The role writes ``<results dir>/<run id>/run.json`` (roles/migration/tasks/record.yml):
run_id, status, error, vm, source, destination, uri, already_migrated, qemu{...},
timeline, events, heartbeat, verification{name: bool or null}, ... A ``RunSummary`` holds
its key figures; a ``MigrationResult`` adds the rest of what a caller needs and the record.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from qmigrate.errors import BadInput

LATEST = "latest"
RECORD_NAME = "run.json"

_Run = TypeVar("_Run", bound="RunSummary")


@dataclass(frozen=True)
class RunSummary:
    """A run's key figures. Times in ms, sizes in bytes, throughput in Mbit/s; a figure
    QEMU did not report (a migration that never started) is None."""

    run_id: str
    status: str
    started: str
    vm: str
    source: str
    destination: str
    already_migrated: bool
    total_time_ms: int | None
    downtime_ms: int | None
    transferred_bytes: int | None
    throughput_mbps: float | None
    # True when every check passed, False when one failed, None when none ran.
    verified: bool | None
    error: str
    record_path: Path | None

    @classmethod
    def from_record(cls: type[_Run], record: dict[str, Any], record_path: Path | None) -> _Run:
        """The run RECORD (run.json's content, or the role's published copy) as CLS."""
        values = _fields_of(record, record_path)
        return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls)})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: paths as strings."""
        data = dataclasses.asdict(self)
        data["record_path"] = str(self.record_path) if self.record_path else None
        return data


@dataclass(frozen=True)
class MigrationResult(RunSummary):
    """One migration: its summary, the rest of QEMU's figures, each verification, and the
    whole record (run.json, with the timeline and QEMU's events)."""

    uri: str
    protocol: str | None
    setup_time_ms: int | None
    dirty_sync_count: int | None
    verification: dict[str, bool | None]
    record: dict[str, Any] = field(repr=False)


def _fields_of(record: dict[str, Any], record_path: Path | None) -> dict[str, Any]:
    qemu = record.get("qemu") or {}
    verification = dict(record.get("verification") or {})
    checked = [passed for passed in verification.values() if passed is not None]
    return {
        "run_id": str(record.get("run_id", "")),
        "status": str(record.get("status", "unknown")),
        "started": str(record.get("started", "")),
        "vm": str(record.get("vm", "")),
        "source": str(record.get("source", "")),
        "destination": str(record.get("destination", "")),
        "already_migrated": bool(record.get("already_migrated", False)),
        "total_time_ms": qemu.get("total_time_ms"),
        "downtime_ms": qemu.get("downtime_ms"),
        "transferred_bytes": qemu.get("transferred_bytes"),
        "throughput_mbps": qemu.get("throughput_mbps"),
        "verified": all(checked) if checked else None,
        "error": str(record.get("error") or ""),
        "record_path": record_path,
        "uri": str(record.get("uri", "")),
        "protocol": record.get("protocol"),
        "setup_time_ms": qemu.get("setup_time_ms"),
        "dirty_sync_count": qemu.get("dirty_sync_count"),
        "verification": verification,
        "record": record,
    }


def read_record(path: Path) -> dict[str, Any]:
    """A run.json file's record."""
    record = json.loads(path.read_text())
    if not isinstance(record, dict):
        raise ValueError(f"{path}: not a run record (a JSON object)")
    return record


def load_result(published: dict[str, Any], path: Path | None) -> MigrationResult:
    """A MigrationResult from the record the role PUBLISHED, completed from its run.json at
    PATH when that holds the same run (the published record leaves out timeline and events)."""
    record = published
    if path is not None:
        path = path.resolve()
        try:
            written = read_record(path)
        except (OSError, ValueError):
            written = {}
        if written.get("run_id") == published.get("run_id"):
            record = written
    return MigrationResult.from_record(record, path)


def runs(results_dir: Path) -> list[RunSummary]:
    """Every run recorded under RESULTS_DIR, oldest first. Directories without a readable
    run.json (a run interrupted before its record) are left out."""
    summaries = []
    if not results_dir.is_dir():
        return []
    for run_dir in results_dir.iterdir():
        path = run_dir / RECORD_NAME
        if run_dir.name == LATEST or not path.is_file():
            continue
        try:
            record = read_record(path)
        except (OSError, ValueError):
            continue
        summaries.append(RunSummary.from_record(record, path))
    return sorted(summaries, key=lambda run: (run.started, run.run_id))


def find_record(results_dir: Path, run: str) -> Path:
    """The run.json of RUN: a run id, 'latest', or the path of a run's directory or record."""
    candidates = [Path(run), Path(run) / RECORD_NAME, results_dir / run / RECORD_NAME]
    for path in candidates:
        if path.is_file():
            return path.resolve()
    raise BadInput(
        "",
        "",
        f"no run {run!r}: neither a run id under {results_dir} nor a run.json or its directory",
        variables=("run",),
    )
