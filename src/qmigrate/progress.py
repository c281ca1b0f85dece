"""Live progress of a migration, read from the source VM's HMP monitor while it runs.

The qemu_migrate module records a timeline, but Ansible hands it over only when the task
ends; for live progress qmigrate asks the source QEMU itself (``info migrate``) on its HMP
socket, ``<runtime dir>/<source host>/<vm>/monitor.sock``, which the module leaves free (it
uses the QMP socket). That assumes the hypervisors share this machine's filesystem, as the
embedded lab's namespaces do; where the socket cannot be reached (Cloudlab, from a laptop)
there is simply no live progress, and the result is the same.

Each progress point has the shape of a run.json timeline point: t, status, transferred,
remaining, total (bytes), mbps (Mbit/s), dirty_sync_count, dirty_pages_rate; t counts from
when polling began (the timeline's from the migrate command).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from qmigrate.module_utils import use_module_utils

MONITOR_SOCKET = "monitor.sock"
# Monitor answers arrive in milliseconds; a busy or vanished monitor must not stall the
# caller's progress loop for long.
MONITOR_TIMEOUT = 1.0

Point = dict[str, Any]


def monitor_tools(project_root: Path) -> ModuleType:
    """The project's module_utils/migration.py (HMP client, ``info migrate`` parser), as
    the modules import it: ``ansible.module_utils.migration``."""
    use_module_utils(project_root)
    return importlib.import_module("ansible.module_utils.migration")


def monitor_socket(source: str, vm: str, runtime_dir: Path) -> Path:
    """The HMP socket of VM on host SOURCE (roles/vm: <runtime dir>/<host>/<vm>/; the
    study's settings, qmigrate_vm_name and qmigrate_runtime_dir, say which)."""
    return runtime_dir / source / vm / MONITOR_SOCKET


class MigrationWatch:
    """Polls ``info migrate`` on one HMP socket and reports this migration's progress.

    Before the migration starts the source may still show the final state of an earlier
    one (the VM came in by migration); such a state is only reported once this migration
    has been seen running. Errors (no socket yet, another client on it) are not reported:
    the next poll tries again.
    """

    def __init__(self, tools: ModuleType, socket: Path, timeout: float = MONITOR_TIMEOUT) -> None:
        self._tools = tools
        self._socket = socket
        self._timeout = timeout
        self._client: Any = None
        self._started = time.time()
        self._running = False

    def poll(self) -> Point | None:
        """The progress now, or None when there is none to show."""
        try:
            if self._client is None:
                self._client = self._tools.HMPClient(str(self._socket), self._timeout)
                self._client.connect()
            text = self._client.command("info migrate")
        except (OSError, self._tools.QMPError):
            self.close()
            return None
        point = self._tools.sample(self._tools.parse_info_migrate(text), self._started)
        status = point["status"]
        if status not in self._tools.FINAL_STATES and status != "none":
            self._running = True
        return point if self._running else None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class ProgressReporter:
    """Passes a migration's progress to ON_PROGRESS: call ``tick()`` often (every ~0.2 s);
    polling starts once ``source_known()`` has named the source host."""

    def __init__(
        self,
        on_progress: Callable[[Point], None],
        watch_factory: Callable[[str], MigrationWatch],
    ) -> None:
        self._on_progress = on_progress
        self._watch_factory = watch_factory
        self._source: str | None = None
        self._watch: MigrationWatch | None = None
        self.reported = False

    def source_known(self, host: str) -> None:
        if self._source is None:
            self._source = host

    def tick(self) -> None:
        if self._source is None:
            return
        if self._watch is None:
            self._watch = self._watch_factory(self._source)
        point = self._watch.poll()
        if point is not None:
            self.reported = True
            self._on_progress(point)

    def finish(self, last_point: Point | None) -> None:
        """Stop polling; show LAST_POINT (the record's final timeline point) if progress
        was shown, so a display ends where the migration did."""
        if self._watch is not None:
            self._watch.close()
        if self.reported and last_point is not None:
            self._on_progress(last_point)
