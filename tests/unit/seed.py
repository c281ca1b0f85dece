"""The seed's VM: its hand-typed QEMU command line (data/seed_source_vm.sh), and how the
qemu_argv filter's command line differs from it."""

from __future__ import annotations

import shlex

from tests.unit import DATA

SEED = DATA / "seed_source_vm.sh"
RUN = "/run/qmigrate/labsrc/vm0"

# Every documented difference (filter_plugins/qemu.py's docstring): seed option -> ours.
DIFFERENCES = {
    ("--enable-kvm", None): ("-accel", "kvm"),
    ("-nographic", None): ("-display", "none"),
    ("-serial", "mon:stdio"): ("-serial", f"file:{RUN}/serial.log"),
    ("-monitor", "unix:qemu-monitor-migration,server,nowait"): (
        "-monitor",
        f"unix:{RUN}/monitor.sock,server=on,wait=off",
    ),
}
ADDED = {
    ("-name", "vm0"),
    ("-qmp", f"unix:{RUN}/qmp.sock,server=on,wait=off"),
    ("-qmp", f"unix:{RUN}/events.sock,server=on,wait=off"),
    ("-pidfile", f"{RUN}/qemu.pid"),
    ("-daemonize", None),
}


def options(argv: list[str]) -> list[tuple[str, str | None]]:
    """(option, value) pairs of a QEMU argv; value None for a flag."""
    pairs, i = [], 0
    while i < len(argv):
        opt = argv[i]
        if i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            pairs.append((opt, argv[i + 1]))
            i += 2
        else:
            pairs.append((opt, None))
            i += 1
    return pairs


def seed_argv() -> list[str]:
    text = "\n".join(line for line in SEED.read_text().splitlines() if not line.startswith("#"))
    argv = shlex.split(text.replace("\\\n", " "))
    assert argv[:2] == ["sudo", "qemu-system-x86_64"]
    return argv[2:]
