"""Ethernet frames and pcap files as tcpdump writes them, and the probe program
(roles/probe/files/qmigrate-probe) loaded as a module, for the tests of the capture."""

from __future__ import annotations

import importlib.machinery
import socket
import struct
import types

from tests import ROOT

GUEST, CLIENT = "10.10.1.100", "10.10.1.3"
GUEST_MAC, CLIENT_MAC = bytes.fromhex("525500d15501"), bytes.fromhex("ca21ca37a7da")
BROADCAST = b"\xff" * 6


def role_program(name: str = "qmigrate-probe"):
    """One of the probe role's programs as a module (a script with no .py suffix)."""
    path = ROOT / "roles" / "probe" / "files" / name
    loader = importlib.machinery.SourceFileLoader(name.replace("-", "_"), str(path))
    module = types.ModuleType(loader.name)
    loader.exec_module(module)
    return module


def probe_program():
    """The probe program (roles/probe/files/qmigrate-probe) as a module."""
    return role_program("qmigrate-probe")


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
