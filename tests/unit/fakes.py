"""Fake QEMU monitors on real UNIX sockets, each served from a thread."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# The migration parameters and capabilities a FakeQEMU starts with.
PARAMETERS = {"max-bandwidth": 134217728, "downtime-limit": 300, "multifd-channels": 2}
CAPABILITIES = ("events", "postcopy-ram", "multifd", "auto-converge")


class FakeQEMU:
    """A QMP monitor serving one client at a time, like QEMU, from a thread.

    The VM is in run state VM; `migrate` starts a migration whose query-migrate answers
    are STATES, one per query (the last repeating). A state may be a callable, called with
    this fake, for a test that acts at that moment. `migrate_cancel` makes the migration
    CANCEL_TO (and, like QEMU, restarts a source that was running unless it completed).
    Every command received is in `commands`. YANK lists the types of its yank instances
    (query-yank), as a QEMU whose last migration never tore down keeps "migration".
    VERSION, MACHINE and MACHINE_TYPES say which QEMU it is (query-version, the QOM type
    of /machine, query-machines).
    """

    def __init__(
        self,
        path: Path,
        *,
        vm: str = "running",
        states: list[Any] | None = None,
        cancel_to: str = "cancelled",
        before: dict | None = None,
        slow: set[int] | None = None,
        yank: list[str] | None = None,
        version: tuple[int, int, int] = (7, 2, 22),
        machine: str = "pc-i440fx-7.2",
        machine_types: Sequence[str] = ("pc-i440fx-7.1", "pc-i440fx-7.2", "pc-q35-7.2"),
        finishing: int = 0,
    ) -> None:
        self.path = str(path)
        self.version, self.machine = version, machine
        self.machine_types = list(machine_types)
        self.objects: dict[str, dict] = {}  # object-add's, by id
        # query-status answers finish-migrate this many times after completion (10.0)
        self.finishing = finishing
        self.yank = list(yank or [])
        self.vm = vm
        self.states = list(states or [{"status": "completed", "total-time": 5}])
        self.cancel_to = cancel_to
        self.migration: dict = dict(before or {})
        self.parameters = dict(PARAMETERS)
        self.capabilities = dict.fromkeys(CAPABILITIES, False)
        self.commands: list[tuple[str, Any]] = []
        self.queries = 0
        self.started = False  # by migrate: query-migrate then follows STATES
        self.slow = slow or set()  # query numbers (from 1) not answered in time
        self.error: BaseException | None = None
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(4)
        self.listener.settimeout(0.2)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def names(self) -> list[str]:
        return [name for name, _ in self.commands]

    def _serve(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    conn, _ = self.listener.accept()
                except TimeoutError:
                    continue
                with conn, conn.makefile("rb") as lines:
                    conn.sendall(
                        b'{"QMP": {"version": {"qemu": {"major": 7}}, "capabilities": []}}\n'
                    )
                    for raw in lines:
                        request = json.loads(raw)
                        reply = self._answer(request["execute"], request.get("arguments"))
                        reply["id"] = request["id"]
                        conn.sendall(json.dumps(reply).encode() + b"\n")
        except (ConnectionResetError, BrokenPipeError):
            pass  # the client hung up mid-reply
        except BaseException as err:
            self.error = err

    def _answer(self, command: str, arguments: Any) -> dict:
        self.commands.append((command, arguments))
        if command == "query-migrate":
            self.queries += 1
            if self.queries in self.slow:
                time.sleep(1.5)  # longer than the module's monitor_timeout in these tests
            return {"return": self._query()}
        if command == "qmp_capabilities":
            return {"return": {}}
        if command == "query-version":
            major, minor, micro = self.version
            qemu = {"major": major, "minor": minor, "micro": micro}
            return {"return": {"qemu": qemu, "package": f"fake {major}.{minor}"}}
        if command == "qom-get" and arguments == {"path": "/machine", "property": "type"}:
            return {"return": f"{self.machine}-machine"}
        if command == "query-machines":
            return {"return": [{"name": n, "cpu-max": 255} for n in self.machine_types]}
        if command == "object-add":
            if arguments["id"] in self.objects:
                return {"error": {"class": "GenericError", "desc": "duplicate ID"}}
            self.objects[arguments["id"]] = dict(arguments)
            return {"return": {}}
        if command == "object-del":
            if self.objects.pop(arguments["id"], None) is None:
                return {"error": {"class": "GenericError", "desc": "object not found"}}
            return {"return": {}}
        if command == "query-yank":
            return {"return": [{"type": t} for t in self.yank]}
        if command == "query-status":
            status = self.vm
            if status == "postmigrate" and self.finishing > 0:
                self.finishing -= 1
                status = "finish-migrate"
            return {"return": {"status": status, "running": status == "running"}}
        if command == "query-migrate-capabilities":
            return {"return": [{"capability": k, "state": v} for k, v in self.capabilities.items()]}
        if command == "query-migrate-parameters":
            return {"return": self.parameters}
        if command == "migrate-set-capabilities":
            for cap in arguments["capabilities"]:
                self.capabilities[cap["capability"]] = cap["state"]
            return {"return": {}}
        if command == "migrate-set-parameters":
            for name, value in arguments.items():
                if isinstance(self.parameters.get(name), int) and not isinstance(value, int):
                    return {"error": {"class": "GenericError", "desc": f"'{name}' expects uint64"}}
            self.parameters.update(arguments)
            return {"return": {}}
        if command == "migrate":
            self.started = True
            self.migration = {"status": "setup"}
            return {"return": {}}
        if command == "migrate-incoming":
            self.migration = {
                "socket-address": [{"type": "inet", "host": "10.10.1.2", "port": "4444"}]
            }
            return {"return": {}}
        if command == "migrate_cancel":
            status = self.migration.get("status")
            if status not in ("completed", "failed", "cancelled"):
                self.migration = {"status": self.cancel_to}
                self.states = [self.migration]
                if self.cancel_to == "cancelled" and self.vm in ("paused", "finish-migrate"):
                    self.vm = "running"
            return {"return": {}}
        if command == "cont":
            self.vm = "running"
            return {"return": {}}
        if command == "migrate-start-postcopy":
            return {"return": {}}
        return {"error": {"class": "CommandNotFound", "desc": f"no command {command}"}}

    def _query(self) -> dict:
        if not self.started:
            return self.migration
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        if callable(state):
            state = state(self)
        self.migration = dict(state)
        if self.migration.get("status") == "completed":
            self.vm = "postmigrate"
        return self.migration

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.listener.close()
        if self.error is not None:
            raise self.error


HMP_BANNER = "QEMU 7.2.22 monitor - type 'help' for more information\r\n"
HMP_PROMPT = "(qemu) "


class FakeHMP:
    """An HMP monitor on a UNIX socket serving one client from a thread.

    It sends the banner and prompt, then answers each command line with the line's echo
    (plain, not QEMU's per-keystroke redraw) and REPLIES[line]: one output for every time
    the line comes, or a list of them, one per time (the last repeating). Lines received
    are in `received`. stop() re-raises whatever failed in the thread.
    """

    def __init__(self, path: Path, replies: Mapping[str, str | Sequence[str]]) -> None:
        self.path = str(path)
        self.replies = replies
        self.received: list[str] = []
        self.error: BaseException | None = None
        self.conn: socket.socket | None = None
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(1)
        self.listener.settimeout(2)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            self.conn, _ = self.listener.accept()
            self.conn.settimeout(2)
            with self.conn, self.conn.makefile("rb") as lines:
                self.conn.sendall((HMP_BANNER + HMP_PROMPT).encode())
                for raw in lines:
                    line = raw.decode().rstrip("\r\n")
                    self.received.append(line)
                    output = self._output(line)
                    # QEMU prints nothing, not an empty line, for a command without output.
                    answer = f"{output}\r\n" if output else ""
                    self.conn.sendall(f"{line}\r\n{answer}{HMP_PROMPT}".encode())
        except BaseException as err:  # handed to the test by stop()
            self.error = err

    def _output(self, line: str) -> str:
        reply = self.replies.get(line, f"unknown command: '{line}'")
        if isinstance(reply, str):
            return reply
        times = self.received.count(line)
        return reply[min(times, len(reply)) - 1]

    def stop(self) -> None:
        if self.conn is not None:
            # Ends the thread's read loop; fails only if the client hung up first.
            with contextlib.suppress(OSError):
                self.conn.shutdown(socket.SHUT_RDWR)
        self.thread.join(3)
        self.listener.close()
        assert not self.thread.is_alive(), "fake HMP monitor thread did not finish"
        if self.error is not None:
            raise self.error
