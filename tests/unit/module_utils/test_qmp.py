"""Tests for module_utils/qmp.py against fake monitors on real UNIX sockets, and real QEMU."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from ansible.module_utils.qmp import (
    HMPClient,
    QMPClient,
    QMPCommandError,
    QMPConnectError,
    QMPProtocolError,
    QMPTimeout,
    open_monitor,
)

from tests.unit.fakes import HMP_BANNER, HMP_PROMPT

GREETING = {
    "QMP": {
        "version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "test"},
        "capabilities": ["oob"],
    }
}
SHORT = 0.3  # seconds a test lets the client wait for something that never comes
QEMU = shutil.which("qemu-system-x86_64")


def qemu_echo(line: str) -> str:
    """What QEMU 7.2's line editor sends back while a line arrives: a full redraw per byte."""
    redraws = [line[:n] + "\x1b[K" + "\x1b[D" * n for n in range(1, len(line))]
    return "".join(redraws) + line + "\x1b[K\r\n"


class Peer:
    """The monitor's end of one connection, driven by a test's script."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.pending = b""
        self.requests: list[dict] = []

    def send(self, data: str | bytes) -> None:
        self.conn.sendall(data.encode() if isinstance(data, str) else data)

    def send_json(self, *messages: dict) -> None:
        self.send(b"".join(json.dumps(message).encode() + b"\r\n" for message in messages))

    def recv_line(self) -> bytes:
        while b"\n" not in self.pending:
            chunk = self.conn.recv(4096)
            if not chunk:
                return b""
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line

    def recv_request(self) -> dict:
        request = json.loads(self.recv_line())
        self.requests.append(request)
        return request

    def handshake(self) -> None:
        self.send_json(GREETING)
        request = self.recv_request()
        assert request["execute"] == "qmp_capabilities"
        self.send_json({"return": {}, "id": request["id"]})

    def reply(self, value: object) -> dict:
        request = self.recv_request()
        self.send_json({"return": value, "id": request["id"]})
        return request

    def hmp_banner(self) -> None:
        self.send(HMP_BANNER + HMP_PROMPT)

    def hmp_answer(self, output: str) -> str:
        line = self.recv_line().decode()
        self.send(qemu_echo(line) + output + HMP_PROMPT)
        return line


class FakeMonitor:
    """A listening UNIX socket whose first connection is served by ``script`` in a thread.

    The connection stays open after the script until stop(), so a client waiting for more
    sees silence, not EOF. stop() re-raises whatever failed in the script.
    """

    def __init__(self, path: Path, script: Callable[[Peer], None]) -> None:
        self.path = str(path)
        self.script = script
        self.peer: Peer | None = None
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(1)
        self.listener.settimeout(5)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError as err:
            self.error = err
            return
        with conn:
            conn.settimeout(5)
            self.peer = Peer(conn)
            try:
                self.script(self.peer)
            except BaseException as err:
                self.error = err
            self.finished.wait(5)

    def stop(self) -> None:
        self.finished.set()
        self.thread.join(5)
        self.listener.close()
        assert not self.thread.is_alive(), "fake monitor thread did not finish"
        if self.error is not None:
            raise self.error


@pytest.fixture
def serve(tmp_path: Path):
    monitors: list[FakeMonitor] = []

    def start(script: Callable[[Peer], None]) -> FakeMonitor:
        monitor = FakeMonitor(tmp_path / f"monitor{len(monitors)}.sock", script)
        monitors.append(monitor)
        return monitor

    yield start
    for monitor in monitors:
        monitor.stop()


# QMP


def test_connect_reads_greeting_and_negotiates_capabilities(serve):
    monitor = serve(Peer.handshake)
    client = QMPClient(monitor.path, timeout=2)

    client.connect()

    assert client.greeting == GREETING
    assert client.version == {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "test"}
    assert monitor.peer.requests == [{"execute": "qmp_capabilities", "id": 1}]
    client.close()


def test_execute_returns_the_return_value_and_numbers_each_request(serve):
    def script(peer: Peer) -> None:
        peer.handshake()
        peer.reply({"status": "running", "running": True})
        peer.reply({})

    monitor = serve(script)

    with QMPClient(monitor.path, timeout=2) as client:
        status = client.execute("query-status")
        stopped = client.execute("migrate-set-parameters", {"downtime-limit": 300})

    assert status == {"status": "running", "running": True}
    assert stopped == {}
    assert monitor.peer.requests[1:] == [
        {"execute": "query-status", "id": 2},
        {"execute": "migrate-set-parameters", "id": 3, "arguments": {"downtime-limit": 300}},
    ]


def test_error_reply_raises_command_error_with_class_and_desc(serve):
    def script(peer: Peer) -> None:
        peer.handshake()
        request = peer.recv_request()
        error = {"class": "CommandNotFound", "desc": "The command nope has not been found"}
        peer.send_json({"error": error, "id": request["id"]})

    monitor = serve(script)

    with QMPClient(monitor.path, timeout=2) as client, pytest.raises(QMPCommandError) as caught:
        client.execute("nope")

    assert caught.value.command == "nope"
    assert caught.value.error_class == "CommandNotFound"
    assert caught.value.desc == "The command nope has not been found"
    assert monitor.path in str(caught.value)


def test_events_before_a_reply_are_kept_with_their_receive_time(serve):
    def script(peer: Peer) -> None:
        peer.handshake()
        request = peer.recv_request()
        peer.send_json({"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 0}})
        peer.send_json({"event": "MIGRATION", "data": {"status": "active"}})
        peer.send_json({"return": {}, "id": request["id"]})

    monitor = serve(script)

    with QMPClient(monitor.path, timeout=2) as client:
        before = time.time()
        client.execute("stop")
        after = time.time()
        buffered = [dict(event) for event in client.events]
        found = client.wait_event({"MIGRATION", "RESUME"}, timeout=SHORT)
        left = client.pop_events()
        emptied = client.events

    assert [event["event"] for event in buffered] == ["STOP", "MIGRATION"]
    assert all(before <= event["received"] <= after for event in buffered)
    assert found["data"] == {"status": "active"}
    assert found["received"] == buffered[1]["received"]
    assert [event["event"] for event in left] == ["STOP"]
    assert emptied == []


def test_wait_event_reads_until_a_matching_event_and_keeps_the_others(serve):
    def script(peer: Peer) -> None:
        peer.handshake()
        time.sleep(0.05)
        peer.send_json({"event": "RESUME"})
        time.sleep(0.05)
        peer.send_json({"event": "SHUTDOWN", "data": {"guest": True}})

    monitor = serve(script)

    with QMPClient(monitor.path, timeout=2) as client:
        event = client.wait_event("SHUTDOWN", timeout=2)
        others = client.pop_events()

    assert event["data"] == {"guest": True}
    assert [other["event"] for other in others] == ["RESUME"]


def test_wait_event_times_out_naming_the_events(serve):
    monitor = serve(Peer.handshake)

    with QMPClient(monitor.path, timeout=2) as client, pytest.raises(QMPTimeout) as caught:
        client.wait_event(["STOP", "RESUME"], timeout=SHORT)

    assert "RESUME|STOP" in str(caught.value)
    assert caught.value.elapsed == pytest.approx(SHORT, abs=0.2)


def test_reply_that_never_comes_times_out_quickly(serve):
    monitor = serve(Peer.handshake)

    with QMPClient(monitor.path, timeout=2) as client:
        started = time.monotonic()
        with pytest.raises(QMPTimeout) as caught:
            client.execute("query-migrate", timeout=SHORT)
        waited = time.monotonic() - started

    assert waited < SHORT + 0.5
    assert "'query-migrate'" in str(caught.value)
    assert "0.3" in str(caught.value)


def test_late_reply_to_a_timed_out_command_is_not_taken_for_the_next(serve):
    def script(peer: Peer) -> None:
        peer.handshake()
        slow = peer.recv_request()
        fast = peer.recv_request()
        peer.send_json({"return": "late", "id": slow["id"]}, {"return": "fresh", "id": fast["id"]})

    monitor = serve(script)

    with QMPClient(monitor.path, timeout=2) as client:
        with pytest.raises(QMPTimeout):
            client.execute("query-slow", timeout=SHORT)
        answer = client.execute("query-fast")

    assert answer == "fresh"


def test_connect_to_a_missing_socket_raises_connect_error(tmp_path):
    client = QMPClient(str(tmp_path / "absent.sock"), timeout=SHORT)

    with pytest.raises(QMPConnectError, match=r"absent\.sock: no such socket"):
        client.connect()


def test_connect_to_a_socket_nobody_listens_on_raises_connect_error(tmp_path):
    path = str(tmp_path / "stale.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as left_behind:
        left_behind.bind(path)

    with pytest.raises(QMPConnectError, match="refused"):
        QMPClient(path, timeout=SHORT).connect()


def test_connect_to_a_peer_that_is_not_qmp_raises_connect_error(serve):
    monitor = serve(Peer.hmp_banner)

    with pytest.raises(QMPConnectError, match="expected a QMP greeting"):
        QMPClient(monitor.path, timeout=2).connect()


def test_peer_closing_in_the_middle_of_a_reply_raises_protocol_error(serve):
    def script(peer: Peer) -> None:
        peer.handshake()
        peer.recv_request()
        peer.send(b'{"return": {"status": "runn')
        peer.conn.shutdown(socket.SHUT_RDWR)

    monitor = serve(script)

    with QMPClient(monitor.path, timeout=2) as client, pytest.raises(QMPProtocolError) as caught:
        client.execute("query-status")

    assert "in the middle of the reply to 'query-status'" in str(caught.value)


def test_malformed_json_raises_protocol_error(serve):
    def script(peer: Peer) -> None:
        peer.handshake()
        peer.recv_request()
        peer.send(b'{"return": oops}\r\n')

    monitor = serve(script)

    with QMPClient(monitor.path, timeout=2) as client, pytest.raises(QMPProtocolError) as caught:
        client.execute("query-status")

    assert "oops" in str(caught.value)


def test_a_reply_and_an_event_arriving_in_one_recv_are_both_handled(serve):
    def script(peer: Peer) -> None:
        peer.handshake()
        request = peer.recv_request()
        peer.send_json({"return": 7, "id": request["id"]}, {"event": "STOP"})

    monitor = serve(script)

    with QMPClient(monitor.path, timeout=2) as client:
        answer = client.execute("query-number")
        event = client.wait_event("STOP", timeout=SHORT)

    assert answer == 7
    assert event["event"] == "STOP"


def test_a_message_split_over_several_sends_is_reassembled(serve):
    def script(peer: Peer) -> None:
        peer.handshake()
        request = peer.recv_request()
        reply = json.dumps({"return": {"status": "completed"}, "id": request["id"]}) + "\r\n"
        for piece in (reply[:5], reply[5:17], reply[17:-1], reply[-1:]):
            peer.send(piece)
            time.sleep(0.02)

    monitor = serve(script)

    with QMPClient(monitor.path, timeout=2) as client:
        answer = client.execute("query-migrate")

    assert answer == {"status": "completed"}


def test_leaving_the_context_closes_the_connection(serve):
    closed = []

    def script(peer: Peer) -> None:
        peer.handshake()
        closed.append(peer.recv_line() == b"")

    monitor = serve(script)

    with QMPClient(monitor.path, timeout=2):
        pass
    monitor.stop()

    assert closed == [True]


# HMP


def test_hmp_connect_reads_the_banner_up_to_the_prompt(serve):
    monitor = serve(Peer.hmp_banner)
    client = HMPClient(monitor.path, timeout=2)

    client.connect()

    assert client.banner == "QEMU 7.2.22 monitor - type 'help' for more information"
    client.close()


def test_hmp_command_returns_output_without_echo_or_escapes(serve):
    def script(peer: Peer) -> None:
        peer.hmp_banner()
        peer.hmp_answer("VM status: running\r\n")
        peer.hmp_answer("")
        peer.hmp_answer("line one\r\n  line two\r\n")

    monitor = serve(script)

    with HMPClient(monitor.path, timeout=2) as client:
        status = client.command("info status")
        silent = client.command("stop")
        lines = client.command("info something")

    assert status == "VM status: running"
    assert silent == ""
    assert lines == "line one\n  line two"
    assert monitor.peer.pending == b""


def test_hmp_output_and_prompt_split_over_several_sends_are_reassembled(serve):
    def script(peer: Peer) -> None:
        peer.hmp_banner()
        line = peer.recv_line().decode()
        for piece in (qemu_echo(line)[:9], qemu_echo(line)[9:], "VM status: ", "paused\r\n(q"):
            peer.send(piece)
            time.sleep(0.02)
        peer.send("emu) ")

    monitor = serve(script)

    with HMPClient(monitor.path, timeout=2) as client:
        status = client.command("info status")

    assert status == "VM status: paused"


def test_hmp_command_refuses_control_characters(serve):
    monitor = serve(Peer.hmp_banner)

    with HMPClient(monitor.path, timeout=2) as client, pytest.raises(ValueError):
        client.command("info status\ninfo version")


def test_hmp_prompt_that_never_comes_times_out_and_closes(serve):
    def script(peer: Peer) -> None:
        peer.hmp_banner()
        peer.recv_line()

    monitor = serve(script)

    with HMPClient(monitor.path, timeout=2) as client:
        with pytest.raises(QMPTimeout, match="'info migrate'"):
            client.command("info migrate", timeout=SHORT)
        with pytest.raises(QMPConnectError, match="not connected"):
            client.command("info status")


def test_hmp_client_refuses_a_qmp_socket(serve):
    monitor = serve(lambda peer: peer.send_json(GREETING))

    with pytest.raises(QMPConnectError, match="QMP socket, not HMP"):
        HMPClient(monitor.path, timeout=2).connect()


# open_monitor


@pytest.mark.parametrize(
    ("script", "kind"),
    [(Peer.handshake, QMPClient), (Peer.hmp_banner, HMPClient)],
    ids=["qmp", "hmp"],
)
def test_open_monitor_detects_the_kind_from_the_first_bytes(serve, script, kind):
    monitor = serve(script)

    with open_monitor(monitor.path, timeout=2) as client:
        detected = type(client)

    assert detected is kind


def test_open_monitor_refuses_a_peer_that_is_neither(serve):
    monitor = serve(lambda peer: peer.send("SSH-2.0-OpenSSH_9.2\r\n"))

    with pytest.raises(QMPConnectError, match="neither QMP nor HMP"):
        open_monitor(monitor.path, timeout=2)


# Real QEMU


@pytest.fixture
def qemu_monitors(tmp_path: Path):
    qmp_path, hmp_path = tmp_path / "qmp.sock", tmp_path / "mon.sock"
    stderr_path = tmp_path / "qemu.stderr"
    argv = [
        QEMU,
        "-machine", "none", "-display", "none", "-nodefaults",
        "-qmp", f"unix:{qmp_path},server=on,wait=off",
        "-monitor", f"unix:{hmp_path},server=on,wait=off",
    ]  # fmt: skip
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
        )
    try:
        deadline = time.monotonic() + 10
        while not (qmp_path.exists() and hmp_path.exists()):
            if process.poll() is not None:
                pytest.fail(f"QEMU exited with {process.returncode}: {stderr_path.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail("QEMU did not create its monitor sockets within 10 s")
            time.sleep(0.02)
        yield str(qmp_path), str(hmp_path)
    finally:
        process.kill()
        process.wait(5)


@pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed")
def test_real_qemu_answers_on_both_monitors(qemu_monitors):
    qmp_path, hmp_path = qemu_monitors

    with open_monitor(qmp_path, timeout=5) as qmp, open_monitor(hmp_path, timeout=5) as hmp:
        running = qmp.execute("query-status")
        hmp_running = hmp.command("info status")
        qmp.execute("stop")
        stop_event = qmp.wait_event("STOP", timeout=5)
        hmp_paused = hmp.command("info status")
        with pytest.raises(QMPCommandError) as unknown:
            qmp.execute("no-such-command")
        hmp_unknown = hmp.command("no-such-command")

    assert isinstance(qmp, QMPClient)
    assert isinstance(hmp, HMPClient)
    assert qmp.version["qemu"]["major"] >= 7
    assert hmp.banner.startswith("QEMU ")
    assert hmp.banner.endswith(" monitor - type 'help' for more information")
    assert running["status"] == "running"
    assert hmp_running == "VM status: running"
    assert "timestamp" in stop_event
    assert hmp_paused == "VM status: paused"
    assert unknown.value.error_class == "CommandNotFound"
    assert hmp_unknown == "unknown command: 'no-such-command'"


def test_await_event_returns_when_one_comes_and_keeps_it(serve):
    def script(peer: Peer) -> None:
        peer.handshake()
        time.sleep(0.1)
        peer.send_json({"event": "MIGRATION", "data": {"status": "completed"}})

    monitor = serve(script)

    with QMPClient(monitor.path, timeout=2) as client:
        start = time.monotonic()
        came = client.await_event(5)
        waited = time.monotonic() - start
        kept = client.pop_events()

    assert came
    assert waited < 4  # at the event, not after the whole 5 s
    assert [event["data"] for event in kept] == [{"status": "completed"}]


def test_await_event_gives_up_after_its_time_without_closing(serve):
    def script(peer: Peer) -> None:
        peer.handshake()
        request = peer.recv_request()
        peer.send_json({"return": {"status": "running"}, "id": request["id"]})

    monitor = serve(script)

    with QMPClient(monitor.path, timeout=2) as client:
        came = client.await_event(SHORT)
        status = client.execute("query-status")

    assert not came
    assert status == {"status": "running"}
