# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether a process has exited, as the modules that stop QEMU and the lab's processes
wait for it.

A process that has exited stays in /proc as a zombie until its parent reaps it. QEMU run
with -daemonize has init as its parent, and an init that reaps late (a container's, about
1.3 s here) would otherwise add that wait to every VM stopped or restarted.

Stdlib only and Python 3.9 compatible, like qmp.py.
"""

from __future__ import annotations

import time


def exited(pid: int) -> bool:
    """PID has exited: no such process, or a zombie (dead, not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return True
    # pid (comm) state ...: comm may hold spaces and parentheses, the state follows the last ')'
    fields = stat.rpartition(")")[2].split()
    return not fields or fields[0] in ("Z", "X")


def wait_exited(pids: list[int], seconds: float, interval: float = 0.02) -> list[int]:
    """Wait up to SECONDS for PIDS to exit; those still running."""
    deadline = time.monotonic() + seconds
    alive = [p for p in pids if not exited(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(interval)
        alive = [p for p in alive if not exited(p)]
    return alive
