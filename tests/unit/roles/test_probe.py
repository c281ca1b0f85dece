"""The probe role's program (roles/probe/files/qmigrate-probe), run on the hosts during a
migration: iperf3, ping and interface counters, each printed as one JSON document."""

from __future__ import annotations

import importlib.machinery
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import types

import pytest

from tests import ROOT


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

GUEST, CLIENT = "10.10.1.100", "10.10.1.3"
GUEST_MAC, CLIENT_MAC = bytes.fromhex("525500d15501"), bytes.fromhex("ca21ca37a7da")
BROADCAST = b"\xff" * 6


def probe_program():
    """The probe program as a module (it is a script with no .py suffix)."""
    path = ROOT / "roles" / "probe" / "files" / "qmigrate-probe"
    loader = importlib.machinery.SourceFileLoader("qmigrate_probe", str(path))
    module = types.ModuleType(loader.name)
    loader.exec_module(module)
    return module


def ether(dst: bytes, src: bytes, etype: int, body: bytes) -> bytes:
    return dst + src + struct.pack("!H", etype) + body


def ipv4(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, proto, 0,
        socket.inet_aton(src), socket.inet_aton(dst),
    )  # fmt: skip
    return header + payload


def icmp(kind: int) -> bytes:
    return struct.pack("!BBHHH", kind, 0, 0, 1, 1) + b"x" * 56


def tcp(payload: int) -> bytes:
    return struct.pack("!HHIIBBHHH", 40000, 5201, 1, 1, 0x50, 0x18, 512, 0, 0) + b"d" * payload


def arp(sender_mac: bytes, sender: str, target: str, op: int = 1) -> bytes:
    return (
        struct.pack("!HHBBH", 1, 0x0800, 6, 4, op)
        + sender_mac
        + socket.inet_aton(sender)
        + (b"\0" * 6)
        + socket.inet_aton(target)
    )


def rarp(mac: bytes) -> bytes:
    return struct.pack("!HHBBH", 1, 0x0800, 6, 4, 3) + mac + b"\0" * 4 + mac + b"\0" * 4


def write_pcap(path, frames, *, nano=False, big=False):
    """A classic pcap file (Ethernet) of FRAMES [(time, bytes)], as tcpdump writes one."""
    order = ">" if big else "<"
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    with open(path, "wb") as f:
        f.write(struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1))
        for t, data in frames:
            sec = int(t)
            frac = round((t - sec) * (1e9 if nano else 1e6))
            f.write(struct.pack(order + "IIII", sec, frac, len(data), len(data)) + data)


def switchover_frames(t0: float) -> list:
    """What a destination's NIC sends around a switchover: nothing from the guest until
    QEMU announces it (RARP), then the guest's gratuitous ARP, ping replies and ACKs."""
    return [
        (t0 + 0.000, ether(BROADCAST, GUEST_MAC, 0x8035, rarp(GUEST_MAC))),
        (t0 + 0.002, ether(BROADCAST, GUEST_MAC, 0x0806, arp(GUEST_MAC, GUEST, GUEST))),
        (t0 + 0.010, ether(CLIENT_MAC, GUEST_MAC, 0x0800, ipv4(GUEST, CLIENT, 1, icmp(0)))),
        (t0 + 0.011, ether(CLIENT_MAC, GUEST_MAC, 0x0800, ipv4(GUEST, CLIENT, 6, tcp(0)))),
        (t0 + 0.012, ether(CLIENT_MAC, GUEST_MAC, 0x0800, ipv4(GUEST, CLIENT, 6, tcp(0)))),
        (t0 + 0.030, ether(CLIENT_MAC, GUEST_MAC, 0x0800, ipv4(GUEST, CLIENT, 1, icmp(0)))),
        # Someone else's traffic is none of the guest's.
        (t0 + 0.031, ether(BROADCAST, CLIENT_MAC, 0x0806, arp(CLIENT_MAC, CLIENT, "10.10.1.1"))),
    ]


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
