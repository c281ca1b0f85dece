# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Clients for QEMU's monitor sockets: QMP (JSON, for machines) and HMP (text, for people).

Stdlib only and Python 3.9 compatible: modules importing this run on the hypervisor's
system Python as ``ansible.module_utils.qmp``.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections import deque
from collections.abc import Iterable
from typing import Any, TypeVar

_HMP_PROMPT = b"(qemu) "
_BUSY_HINT = "QEMU serves one client per monitor socket: is another client connected?"
_RECV_SIZE = 65536
# CSI sequences (ESC [ params final) and the two-byte ESC sequences a terminal may receive.
_ESCAPE = re.compile(r"\x1b(?:\[([0-?]*)[ -/]*([@-~])|[@-Z\\-_])")

_Channel = TypeVar("_Channel", bound="_MonitorChannel")


class QMPError(Exception):
    """Base class of every error raised by this module."""


class QMPConnectError(QMPError):
    """The socket is missing or refuses connections, or what answers is not that monitor."""


class QMPTimeout(QMPError):
    """Connecting, or waiting for a reply, prompt or event, took longer than allowed."""

    def __init__(self, message: str, awaiting: str = "", elapsed: float = 0.0) -> None:
        super().__init__(message)
        self.awaiting = awaiting
        self.elapsed = elapsed


class QMPCommandError(QMPError):
    """QEMU answered a command with ``{"error": {"class": ..., "desc": ...}}``."""

    def __init__(self, command: str, error_class: str, desc: str, path: str = "") -> None:
        where = f"{path}: " if path else ""
        super().__init__(f"{where}{command!r} failed: {error_class}: {desc}")
        self.command = command
        self.error_class = error_class
        self.desc = desc
        self.path = path


class QMPProtocolError(QMPError):
    """The peer closed the connection mid-conversation or sent something that is not QMP."""


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.start = time.monotonic()
        self.end = self.start + seconds

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start


def _preview(data: bytes | str, limit: int = 120) -> str:
    text = repr(data)
    return text if len(text) <= limit else text[:limit] + "..."


class _MonitorChannel:
    """A UNIX stream socket to a monitor, read and written against per-operation deadlines."""

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buffer = b""

    def connect(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        sock, self._sock = self._sock, None
        self._buffer = b""
        if sock is not None:
            sock.close()

    def __enter__(self: _Channel) -> _Channel:
        # open_monitor() hands out clients that are connected already.
        if self._sock is None:
            self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _open(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        deadline = _Deadline(self.timeout)
        try:
            sock.connect(self.path)
        except OSError as err:
            sock.close()
            raise self._connect_failure(err, deadline) from None
        self._sock = sock

    def _connect_failure(self, err: OSError, deadline: _Deadline) -> QMPError:
        if isinstance(err, socket.timeout):  # not TimeoutError on Python 3.9
            return self._timeout_error(deadline, "the connection to be accepted", "")
        if isinstance(err, FileNotFoundError):
            return QMPConnectError(f"{self.path}: no such socket (is the VM running?)")
        if isinstance(err, ConnectionRefusedError):
            return QMPConnectError(
                f"{self.path}: connection refused (nothing listens there; did QEMU exit?)"
            )
        return QMPConnectError(f"{self.path}: cannot connect: {err.strerror or err}")

    def _adopt(self, other: _MonitorChannel) -> None:
        """Take over another channel's connected socket and whatever it has already read."""
        self._sock, self._buffer = other._sock, other._buffer
        other._sock, other._buffer = None, b""

    def _connected_socket(self) -> socket.socket:
        if self._sock is None:
            raise QMPConnectError(f"{self.path}: not connected")
        return self._sock

    def _timeout_error(self, deadline: _Deadline, awaiting: str, hint: str) -> QMPTimeout:
        elapsed = deadline.elapsed()
        suffix = f" ({hint})" if hint else ""
        return QMPTimeout(
            f"{self.path}: timed out after {elapsed:.2f} s waiting for {awaiting}{suffix}",
            awaiting=awaiting,
            elapsed=elapsed,
        )

    def _send(self, data: bytes, deadline: _Deadline, awaiting: str) -> None:
        sock = self._connected_socket()
        remaining = deadline.remaining()
        if remaining <= 0:
            raise self._timeout_error(deadline, awaiting, "")
        sock.settimeout(remaining)
        try:
            sock.sendall(data)
        except socket.timeout:  # noqa: UP041 - on Python 3.9 this is not TimeoutError
            raise self._timeout_error(deadline, awaiting, "") from None
        except OSError as err:
            self.close()
            raise QMPProtocolError(
                f"{self.path}: connection lost before {awaiting}: {err.strerror or err}"
            ) from None

    def _fill(self, deadline: _Deadline, awaiting: str, hint: str = "") -> None:
        """Append the next chunk from the socket to the buffer, or fail trying."""
        sock = self._connected_socket()
        remaining = deadline.remaining()
        if remaining <= 0:
            raise self._timeout_error(deadline, awaiting, hint)
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(_RECV_SIZE)
        except socket.timeout:  # noqa: UP041 - on Python 3.9 this is not TimeoutError
            raise self._timeout_error(deadline, awaiting, hint) from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            where = "in the middle of" if self._buffer.strip() else "while waiting for"
            self.close()
            raise QMPProtocolError(f"{self.path}: peer closed the connection {where} {awaiting}")
        self._buffer += chunk


class QMPClient(_MonitorChannel):
    """QEMU Machine Protocol client: one JSON object per line, replies matched by ``id``."""

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        super().__init__(path, timeout)
        self.greeting: dict[str, Any] | None = None
        self.version: dict[str, Any] | None = None
        self.events: list[dict[str, Any]] = []
        self._replies: deque[dict[str, Any]] = deque()
        self._next_id = 1

    def connect(self) -> None:
        """Read the greeting and leave capabilities negotiation mode."""
        if self._sock is None:
            self._open()
        try:
            deadline = _Deadline(self.timeout)
            try:
                greeting = self._next_message(deadline, "the QMP greeting", _BUSY_HINT)
            except QMPProtocolError as err:
                raise QMPConnectError(f"{err} (expected a QMP greeting)") from err
            qmp = greeting.get("QMP")
            version = qmp.get("version") if isinstance(qmp, dict) else None
            if not isinstance(version, dict):
                raise QMPConnectError(f"{self.path}: not a QMP greeting: {_preview(greeting)}")
            self.greeting = greeting
            self.version = version
            self.execute("qmp_capabilities")
        except BaseException:
            self.close()
            raise

    def execute(
        self, command: str, arguments: dict[str, Any] | None = None, timeout: float | None = None
    ) -> Any:
        """Run a command and return its ``return`` value; events read meanwhile are kept."""
        request: dict[str, Any] = {"execute": command, "id": self._next_id}
        self._next_id += 1
        if arguments is not None:
            request["arguments"] = arguments
        deadline = _Deadline(self.timeout if timeout is None else timeout)
        awaiting = f"the reply to {command!r}"
        self._send(json.dumps(request).encode("utf-8") + b"\n", deadline, awaiting)
        while True:
            reply = self._next_message(deadline, awaiting)
            if reply.get("id") == request["id"]:
                if "return" in reply:
                    return reply["return"]
                if "error" in reply:
                    raise self._command_error(command, reply)
                raise QMPProtocolError(
                    f"{self.path}: {awaiting} has neither 'return' nor 'error': {_preview(reply)}"
                )
            # QEMU leaves out the id only when it could not parse the request at all, so an
            # id-less error answers the command in flight. Other ids are late replies to
            # commands whose callers already timed out.
            if "id" not in reply and "error" in reply:
                raise self._command_error(command, reply)

    def wait_event(self, names: str | Iterable[str], timeout: float) -> dict[str, Any]:
        """Return (and unbuffer) the first event named in ``names``, buffered or yet to come."""
        wanted = {names} if isinstance(names, str) else set(names)
        deadline = _Deadline(timeout)
        awaiting = "event " + "|".join(sorted(wanted))
        checked = 0
        while True:
            for index in range(checked, len(self.events)):
                if self.events[index].get("event") in wanted:
                    return self.events.pop(index)
            checked = len(self.events)
            self._read_messages(deadline, awaiting)

    def await_event(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the next event; True as soon as one has come.
        It stays buffered (pop_events returns it), as do events that came before."""
        count = len(self.events)
        deadline = _Deadline(timeout)
        while len(self.events) == count:
            if deadline.remaining() <= 0:
                return False
            try:
                self._read_messages(deadline, "an event")
            except QMPTimeout:
                return len(self.events) > count
        return True

    def pop_events(self) -> list[dict[str, Any]]:
        """Return every buffered event, oldest first, and empty the buffer."""
        events, self.events = self.events, []
        return events

    def _command_error(self, command: str, reply: dict[str, Any]) -> QMPCommandError:
        error = reply["error"]
        if not isinstance(error, dict):
            return QMPCommandError(command, "?", _preview(error), self.path)
        return QMPCommandError(
            command, str(error.get("class", "?")), str(error.get("desc", "")), self.path
        )

    def _next_message(self, deadline: _Deadline, awaiting: str, hint: str = "") -> dict[str, Any]:
        while not self._replies:
            self._read_messages(deadline, awaiting, hint)
        return self._replies.popleft()

    def _read_messages(self, deadline: _Deadline, awaiting: str, hint: str = "") -> None:
        """File each complete buffered line as an event or a reply, reading more if none is."""
        if b"\n" not in self._buffer:
            self._fill(deadline, awaiting, hint)
        received = time.time()
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except ValueError:
                message = None
            if not isinstance(message, dict):
                self.close()
                raise QMPProtocolError(
                    f"{self.path}: not a QMP message while waiting for {awaiting}: {_preview(line)}"
                )
            if "event" in message:
                message["received"] = received
                self.events.append(message)
            else:
                self._replies.append(message)


def _render_line(raw: str) -> str:
    """Return what a VT100 shows for one line after replaying its cursor movements.

    HMP's line editor echoes input by redrawing the whole line after every keystroke
    (text, ESC[K, then ESC[D back to the start), so deleting the escapes alone would leave
    every prefix of the command behind ("iininfinfo...").
    """
    cells: list[str] = []
    cursor = 0
    position = 0
    while position < len(raw):
        escape = _ESCAPE.match(raw, position)
        if escape:
            params, final = escape.group(1) or "", escape.group(2)
            count = int(params) if params.isdigit() else 1
            if final == "D":
                cursor = max(0, cursor - count)
            elif final == "C":
                cursor += count
                cells.extend(" " * (cursor - len(cells)))
            elif final == "K":
                del cells[cursor:]
            position = escape.end()
            continue
        char = raw[position]
        if char == "\r":
            cursor = 0
        elif char == "\b":
            cursor = max(0, cursor - 1)
        elif char >= " " or char == "\t":
            if cursor < len(cells):
                cells[cursor] = char
            else:
                cells.append(char)
            cursor += 1
        position += 1
    return "".join(cells)


def _render_text(raw: str) -> list[str]:
    return [_render_line(line) for line in raw.split("\n")]


def _ends_with_prompt(data: bytes) -> bool:
    # QEMU prints nothing after the prompt until it has read the next line.
    return data == _HMP_PROMPT or data.endswith(b"\n" + _HMP_PROMPT)


class HMPClient(_MonitorChannel):
    """Human Monitor Protocol client: text commands, answered up to the next ``(qemu)`` prompt.

    After a timeout the monitor may still print the late answer, which would be taken for
    the next command's, so the connection is closed; connect again to go on.
    """

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        super().__init__(path, timeout)
        self.banner = ""

    def connect(self) -> None:
        """Read the banner up to the first prompt."""
        if self._sock is None:
            self._open()
        try:
            deadline = _Deadline(self.timeout)
            awaiting = "the HMP banner and prompt"
            try:
                while not self._buffer.strip():
                    self._fill(deadline, awaiting, _BUSY_HINT)
                if self._buffer.lstrip().startswith(b"{"):
                    raise QMPConnectError(f"{self.path}: this is a QMP socket, not HMP")
                raw = self._read_to_prompt(deadline, awaiting, _BUSY_HINT)
            except QMPProtocolError as err:
                raise QMPConnectError(f"{err} (expected an HMP banner)") from err
            self.banner = "\n".join(_render_text(raw)).strip()
        except BaseException:
            self.close()
            raise

    def command(self, line: str, timeout: float | None = None) -> str:
        """Run one command line and return its output, without echo or terminal escapes."""
        if any(char < " " or char == "\x7f" for char in line):
            # A newline would start a second command; tab and others drive the line editor.
            raise ValueError(f"HMP command must be one line without control characters: {line!r}")
        deadline = _Deadline(self.timeout if timeout is None else timeout)
        awaiting = f"the output of HMP command {line!r}"
        try:
            self._send(line.encode("utf-8") + b"\n", deadline, awaiting)
            raw = self._read_to_prompt(deadline, awaiting)
        except QMPTimeout:
            self.close()
            raise
        lines = _render_text(raw)
        if lines[0] == line:
            del lines[0]
        return "\n".join(lines).rstrip("\n")

    def _read_to_prompt(self, deadline: _Deadline, awaiting: str, hint: str = "") -> str:
        while not _ends_with_prompt(self._buffer):
            self._fill(deadline, awaiting, hint)
        text = self._buffer[: -len(_HMP_PROMPT)].decode("utf-8", "replace")
        self._buffer = b""
        return text


def open_monitor(path: str, timeout: float = 10.0) -> QMPClient | HMPClient:
    """Connect to a monitor socket of either kind, telling them apart by their first bytes."""
    probe = _MonitorChannel(path, timeout)
    probe._open()
    deadline = _Deadline(timeout)
    awaiting = "the monitor's greeting"
    try:
        # A QMP greeting is a JSON object; HMP's banner reads "QEMU <version> monitor ...".
        while True:
            start = probe._buffer.lstrip()
            if start.startswith(b"{") or len(start) >= len(b"QEMU"):
                break
            probe._fill(deadline, awaiting, _BUSY_HINT)
    except QMPProtocolError as err:
        raise QMPConnectError(str(err)) from err
    except BaseException:
        probe.close()
        raise
    client: QMPClient | HMPClient
    if start.startswith(b"{"):
        client = QMPClient(path, timeout)
    elif start.startswith(b"QEMU"):
        client = HMPClient(path, timeout)
    else:
        probe.close()
        raise QMPConnectError(f"{path}: neither QMP nor HMP answered: {_preview(start)}")
    client._adopt(probe)
    client.connect()
    return client
