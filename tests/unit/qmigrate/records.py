"""A run record, and the job events that carry it, as the migration role and
ansible-runner hand them to qmigrate."""

from __future__ import annotations

from typing import Any

RUN_ID = "20261125T220218Z-vm0-labsrc-to-labdst"


def record(**changes: Any) -> dict[str, Any]:
    """A run record as roles/migration/tasks/record.yml writes it (abridged)."""
    base = {
        "run_id": RUN_ID,
        "status": "completed",
        "error": "",
        "vm": "vm0",
        "source": "labsrc",
        "destination": "labdst",
        "client": "labclient",
        "uri": "tcp:10.10.1.2:4444",
        "protocol": "qmp",
        "already_migrated": False,
        "started": "2026-11-25T22:02:18.913225Z",
        "qemu": {
            "status": "completed",
            "total_time_ms": 474,
            "downtime_ms": 37,
            "setup_time_ms": 1,
            "transferred_bytes": 110140115,
            "throughput_mbps": 1865.79,
            "dirty_sync_count": 3,
        },
        "timeline": [
            {"t": 0.1, "status": "active", "transferred": 26301245, "remaining": 252960768},
            {"t": 0.47, "status": "completed", "transferred": 110140115, "remaining": 0},
        ],
        "events": [{"t": 0.0003, "event": "MIGRATION", "data": {"status": "setup"}}],
        "heartbeat": {"continues": True, "missed": 1},
        "verification": {
            "migration_completed": True,
            "destination_running": True,
            "guest_answers_ping": None,
        },
    }
    return {**base, **changes}


def published(rec: dict[str, Any]) -> dict[str, Any]:
    """What the role's set_stats publishes: the record without timeline and events."""
    return {key: value for key, value in rec.items() if key not in ("timeline", "events")}


class Events:
    """Job events as ansible-runner's event_handler receives them, numbered in order."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, kind: str, stdout: str = "", **data: Any) -> Events:
        self.items.append(
            {"event": kind, "counter": len(self.items) + 1, "stdout": stdout, "event_data": data}
        )
        return self

    def ok(self, task: str, host: str, res: dict[str, Any], **data: Any) -> Events:
        return self.add("runner_on_ok", task=task, host=host, res=res, **data)

    def failed(self, task: str, host: str, res: dict[str, Any], **data: Any) -> Events:
        data.setdefault("ignore_errors", None)
        return self.add("runner_on_failed", task=task, host=host, res=res, **data)

    def unreachable(self, task: str, host: str, msg: str) -> Events:
        res = {"unreachable": True, "msg": msg, "changed": False}
        return self.add("runner_on_unreachable", task=task, host=host, res=res)

    def recap(
        self,
        failures: dict[str, int] | None = None,
        dark: dict[str, int] | None = None,
        rescued: dict[str, int] | None = None,
        artifact_data: dict[str, Any] | None = None,
    ) -> Events:
        return self.add(
            "playbook_on_stats",
            changed={},
            dark=dark or {},
            failures=failures or {},
            ok={},
            rescued=rescued or {},
            artifact_data=artifact_data or {},
        )
