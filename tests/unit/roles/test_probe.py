"""The probe role's program (roles/probe/files/qmigrate-probe), run on the hosts during a
migration: iperf3, ping and interface counters, each printed as one JSON document."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import types

import pytest

from tests import ROOT
from tests.unit.frames import (
    BROADCAST,
    CLIENT,
    CLIENT_MAC,
    GUEST,
    GUEST_MAC,
    arp,
    ether,
    icmp,
    ipv4,
    probe_program,
    rarp,
    switchover_frames,
    tcp,
    write_pcap,
)


def test_the_probe_program_interrupts_a_hung_iperf3_and_keeps_its_output(tmp_path):
    fake = tmp_path / "iperf3"
    output = json.dumps({"intervals": [{"sum": {}}], "error": "interrupt"})
    (tmp_path / "out.json").write_text(output)
    fake.write_text(
        "#!/bin/sh\n"
        f"trap 'kill $!; cat {tmp_path}/out.json; exit 1' INT\n"
        "sleep 30 >/dev/null 2>&1 & wait\n"
    )
    fake.chmod(0o755)
    probe = ROOT / "roles" / "probe" / "files" / "qmigrate-probe"
    run = subprocess.run(
        [
            sys.executable,
            str(probe),
            "iperf3",
            "--duration",
            "0.5",
            "--grace",
            "0.5",
            "--",
            "-c",
            "x",
        ],
        capture_output=True,
        text=True,
        timeout=20,
        env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"},
        check=True,
    )
    doc = json.loads(run.stdout)
    assert doc["rc"] == -2 and "interrupted" in doc["stderr"]
    assert doc["output"] == {"intervals": [{"sum": {}}], "error": "interrupt"}


# ---------------------------------------------------------------------------- the wire


@pytest.mark.parametrize("nano,big", [(False, False), (True, False), (False, True)])
def test_a_capture_is_reduced_to_runs_of_each_kind(tmp_path, nano, big):
    probe = probe_program()
    path = tmp_path / "out.pcap"
    write_pcap(path, switchover_frames(100.0), nano=nano, big=big)

    frames = list(probe.pcap_frames(str(path)))
    runs = probe.reduce_frames(frames, GUEST)

    assert len(frames) == 7 and frames[0][0] == pytest.approx(100.0)
    assert runs.keys() == {"rarp", "garp", "ping-reply", "tcp-from-guest"}
    assert runs["rarp"] == [[100.0, 100.0, 1]] and runs["garp"] == [[100.002, 100.002, 1]]
    # Two replies 20 ms apart are two runs; two ACKs 1 ms apart are one.
    assert runs["ping-reply"] == [[100.01, 100.01, 1], [100.03, 100.03, 1]]
    assert runs["tcp-from-guest"] == [[100.011, 100.012, 2]]


def test_frames_to_the_guest_are_kinds_of_their_own(tmp_path):
    probe = probe_program()
    frames = [
        (5.0, ether(GUEST_MAC, CLIENT_MAC, 0x0800, ipv4(CLIENT, GUEST, 1, icmp(8)))),
        (5.1, ether(GUEST_MAC, CLIENT_MAC, 0x0800, ipv4(CLIENT, GUEST, 6, tcp(1448)))),
        (5.2, ether(BROADCAST, CLIENT_MAC, 0x0806, arp(CLIENT_MAC, CLIENT, GUEST))),
        (5.3, ether(GUEST_MAC, CLIENT_MAC, 0x0800, ipv4(CLIENT, GUEST, 17, b"u" * 8))),
    ]

    runs = probe.reduce_frames(frames, GUEST, macs={GUEST_MAC})

    assert {kind: len(r) for kind, r in runs.items()} == {
        "ping-request": 1,
        "tcp-to-guest": 1,
        "arp-to-guest": 1,
        "other-to-guest": 1,
    }


def test_a_rarp_from_another_mac_is_not_the_guests_announcement():
    probe = probe_program()
    other = bytes.fromhex("525500000002")
    frames = [*switchover_frames(1.0), (1.5, ether(BROADCAST, other, 0x8035, rarp(other)))]

    runs = probe.reduce_frames(frames, GUEST)

    assert runs["rarp"] == [[1.0, 1.0, 1]]


def test_a_file_that_is_not_a_pcap_is_refused(tmp_path):
    probe = probe_program()
    path = tmp_path / "x.pcap"
    path.write_bytes(b"not a capture at all, really")
    with pytest.raises(ValueError, match="not a pcap file"):
        list(probe.pcap_frames(str(path)))


def test_tcpdumps_count_of_dropped_frames_is_read():
    probe = probe_program()
    err = (
        "listening on ens1f0\n120 packets captured\n130 packets received by filter\n"
        "3 packets dropped by kernel\n"
    )
    assert probe.dropped_frames(err) == 3
    assert probe.dropped_frames("tcpdump: ens1f0: No such device exists\n") is None


# ---------------------------------------------------------------------------- one clock


def test_the_clock_offset_of_a_host_is_measured_against_a_server(monkeypatch):
    """A server whose clock runs 2.5 s behind ours: the offset (ours minus its) is found
    within the round trip, over a real UDP socket on loopback."""
    probe = probe_program()
    real_time = time.time
    served: dict = {}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()

    behind = types.SimpleNamespace(
        time=lambda: real_time() - 2.5, monotonic=time.monotonic, sleep=time.sleep
    )
    server_module = probe_program()
    monkeypatch.setattr(server_module, "time", behind)
    thread = threading.Thread(
        target=server_module.serve_clock,
        args=("127.0.0.1", port, time.monotonic() + 5, served),
        daemon=True,
    )
    thread.start()

    found = probe.clock_offset("127.0.0.1", port, count=10)

    thread.join(timeout=10)
    assert found["error"] is None and found["samples"] == 10
    assert found["offset"] == pytest.approx(2.5, abs=found["uncertainty"] + 0.001)
    assert served["served"] >= 10 and served["error"] is None


def test_a_clock_server_that_never_answers_gives_no_offset():
    probe = probe_program()
    found = probe.clock_offset("127.0.0.1", 9, count=3, within=0.5)
    assert found["offset"] is None and "no answer" in found["error"]


# ---------------------------------------------------------------------------- QEMU's events


def test_qemu_events_are_recorded_with_qemus_own_stamps(tmp_path):
    """A QMP server on a real socket that greets, accepts qmp_capabilities and sends two
    events, then goes away as a QEMU that exits."""
    probe = probe_program()
    path = str(tmp_path / "events.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def serve():
        conn, _ = listener.accept()
        with conn:
            f = conn.makefile("rwb", buffering=0)
            f.write(b'{"QMP": {"version": {}, "capabilities": []}}\n')
            assert json.loads(f.readline())["execute"] == "qmp_capabilities"
            f.write(b'{"return": {}}\n')
            for name, sec in (("MIGRATION", 100), ("RESUME", 101)):
                event = {
                    "event": name,
                    "data": {},
                    "timestamp": {"seconds": sec, "microseconds": 250},
                }
                f.write(json.dumps(event).encode() + b"\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    out: dict = {}

    probe.record_events(path, time.monotonic() + 5, out)

    thread.join(timeout=5)
    listener.close()
    assert out["error"] is None
    assert out["events"] == [
        {"t": 100.00025, "event": "MIGRATION", "data": {}},
        {"t": 101.00025, "event": "RESUME", "data": {}},
    ]


def test_no_events_socket_is_an_error_not_a_failure(tmp_path):
    probe = probe_program()
    out: dict = {}
    probe.record_events(str(tmp_path / "absent.sock"), time.monotonic() + 1, out)
    assert out["events"] == [] and "absent.sock" in out["error"]
