# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guest's heartbeat on a VM's serial console log, as the modules read it.

qmigrate's guests print a numbered heartbeat line about every 100 ms. A VM that runs and
whose counter goes up has a guest that goes on; qemu_guest reads it after a migration,
qemu_vm in the state check of a run whose guest had already arrived.

Stdlib only and Python 3.9 compatible, like qmp.py.
"""

from __future__ import annotations

import re
import time
from typing import Any

HEARTBEAT = r"qmigrate-heartbeat ([0-9]+) [0-9.]+\r?\n"
# How much of the end of a source's log the modules return (the guest's last words there)
SERIAL_TAIL = 65536


def read_part(path: str, head: int, tail: int) -> tuple[str, str]:
    """The first HEAD and the last TAIL bytes of PATH, as text ('' for a missing file)."""
    try:
        with open(path, "rb") as log:
            start = log.read(head)
            log.seek(0, 2)
            size = log.tell()
            log.seek(max(0, size - tail))
            end = log.read(tail)
    except FileNotFoundError:
        return "", ""
    return start.decode(errors="replace"), end.decode(errors="replace")


def read_tail(path: str, size: int) -> str:
    """The last SIZE bytes of PATH, as text (OSError when it cannot be read)."""
    with open(path, "rb") as log:
        log.seek(0, 2)
        log.seek(max(0, log.tell() - size))
        return log.read().decode(errors="replace")


def counters(pattern: re.Pattern, text: str) -> list[int]:
    return [int(n) for n in pattern.findall(text)]


def watch_heartbeat(
    path: str,
    pattern: re.Pattern,
    running: bool,
    advance: bool = True,
    timeout: float = 60,
    poll_interval: float = 0.1,
    head_bytes: int = 65536,
    tail_bytes: int = 4096,
) -> dict[str, Any]:
    """The log's head and tail and the heartbeat counters in them. For a RUNNING VM, waits
    up to TIMEOUT seconds for the first heartbeat and, with ADVANCE, as long again for a
    later one than the first (the guest goes on)."""
    started = time.monotonic()
    head, tail = read_part(path, head_bytes, tail_bytes)
    if running:
        deadline = started + timeout
        while not counters(pattern, head) and time.monotonic() < deadline:
            time.sleep(poll_interval)
            head, tail = read_part(path, head_bytes, tail_bytes)
        first = (counters(pattern, head) or [None])[0]
        deadline = time.monotonic() + timeout
        while (
            advance
            and first is not None
            and (counters(pattern, tail) or [0])[-1] <= first
            and time.monotonic() < deadline
        ):
            time.sleep(poll_interval)
            head, tail = read_part(path, head_bytes, tail_bytes)
    first = (counters(pattern, head) or [None])[0]
    latest = (counters(pattern, tail) or [None])[-1]
    return {
        "head": head,
        "tail": tail,
        "first": first,
        "latest": latest,
        "waited": round(time.monotonic() - started, 3),
    }


__all__ = ["HEARTBEAT", "SERIAL_TAIL", "counters", "read_part", "read_tail", "watch_heartbeat"]
