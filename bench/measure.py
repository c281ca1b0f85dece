"""What the benchmark watches besides QEMU's own statistics: the guest from the network
(ping), the link between the hypervisors (iperf3), and QEMU's threads (CPU time)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench.lab import (
    CLIENT,
    DESTINATION,
    DESTINATION_ADDRESS,
    GUEST_ADDRESS,
    SOURCE,
    busy_pct,
    cpu_times,
    netns,
)
from qmigrate.profile import parse_ping, ping_figures

PING_INTERVAL = 0.01
REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from ")


def ping_gap(
    text: str, start: float, end: float, downtime_s: float, setup_s: float
) -> float | None:
    """Guest-observed downtime in ms, as a run's profile measures it (qmigrate.profile's
    ping_figures): the longest time the client had a ping waiting and heard nothing, of
    those that began around the switchover (not in the setup phase, whose stall is its own),
    less the usual round trip. START and END are the migration's (epoch seconds), DOWNTIME_S
    and SETUP_S QEMU's; None without replies after the migration."""
    ping = parse_ping(text, 0.0)
    switchover = end - downtime_s
    phases = {
        "start": start,
        "active": start + setup_s,
        "switchover": switchover,
        "resumed": end,
        "end": end,
    }
    return ping_figures(ping, phases, PING_INTERVAL).get("guest_downtime_ms")


class Pinger:
    """ping -i 0.01 from the client to the guest, for as long as a campaign runs."""

    def __init__(self, log: Path, deadline_s: int = 1800) -> None:
        self.log = log
        self._out = log.open("w")
        # timeout bounds the run even if stop() is never reached (and passes stop()'s
        # SIGINT on to ping); not ping's own -w, with which ping ends at its first error
        # (a guest not up yet, or booting anew between a campaign's runs)
        argv = ["timeout", "--signal=INT", str(deadline_s)]
        argv += ["ping", "-n", "-D", "-i", str(PING_INTERVAL), GUEST_ADDRESS]
        self._proc = subprocess.Popen(
            netns(CLIENT, *argv), stdout=self._out, stderr=subprocess.STDOUT
        )

    def wait_for_reply(self, timeout: float = 10) -> bool:
        """Until the guest has answered once (ping writes line by line), so that the
        silence of a switchover has replies before it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(map(REPLY.match, self.log.read_text(errors="replace").splitlines())):
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> str:
        if self._proc.poll() is None:
            # SIGINT, not SIGTERM: ping then flushes what it buffered for the file.
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._out.close()
        return self.log.read_text(errors="replace")


def link_capacity(seconds: int = 5, port: int = 5299, attempts: int = 5) -> float:
    """TCP throughput from the source hypervisor to the destination's experiment address
    (iperf3, one stream, SECONDS long), in Mbit/s."""
    client_argv = ["iperf3", "-c", DESTINATION_ADDRESS, "-p", str(port), "-t", str(seconds)]
    error = ""
    for _ in range(attempts):
        # A one-off server per attempt: a failed attempt may have used up the last one.
        server = subprocess.Popen(
            netns(DESTINATION, "iperf3", "-s", "-1", "-p", str(port), "-B", DESTINATION_ADDRESS),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.5)  # iperf3 -s has no readiness signal; a refused client retries
            client = subprocess.run(
                netns(SOURCE, *client_argv, "-J"),
                capture_output=True,
                text=True,
                timeout=seconds + 30,
                check=False,
            )
            try:
                report = json.loads(client.stdout)
            except json.JSONDecodeError:
                report = {"error": client.stdout + client.stderr}
            received = report.get("end", {}).get("sum_received", {}).get("bits_per_second")
            if received:
                return round(received / 1e6, 1)
            error = str(report.get("error", "no sum_received in iperf3's report"))
        finally:
            if server.poll() is None:
                server.terminate()
            server.wait(timeout=10)
    raise RuntimeError(f"iperf3 from {SOURCE} to {DESTINATION} failed {attempts} times: {error}")


def thread_times(pid: int) -> dict[int, tuple[str, float, float]]:
    """Per thread of PID, by thread id: its name, the seconds it ran on a CPU and the
    seconds it waited, runnable, for one (/proc/.../schedstat). A thread that waits as
    long as it runs is bound by a machine too busy to run it, not by its own work."""
    times = {}
    task_dir = Path(f"/proc/{pid}/task")
    for task in task_dir.iterdir() if task_dir.exists() else []:
        try:
            comm = (task / "comm").read_text().strip()
            ran, waited, _ = (task / "schedstat").read_text().split()
        except (OSError, ValueError):  # the thread ended between the listing and the read
            continue
        times[int(task.name)] = (comm, int(ran) / 1e9, int(waited) / 1e9)
    return times


Sample = tuple[float, dict[int, tuple[str, float, float]]]


class Sampler:
    """Takes read() with its time every INTERVAL seconds in the background (and once more
    at stop()), into samples."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.samples: list[tuple[float, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def read(self) -> Any:
        raise NotImplementedError

    def _take(self) -> None:
        self.samples.append((time.time(), self.read()))

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._take()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._take()


class ThreadSampler(Sampler):
    """The CPU time of the threads of the QEMU whose pid PIDFILE holds (read at each
    sample: a campaign restarts its QEMUs) every 100 ms, so that a thread that ends
    (QEMU's migration thread does, at completion) is still counted."""

    def __init__(self, pidfile: Path, interval: float = 0.1) -> None:
        self.pidfile = pidfile
        super().__init__(interval)

    def read(self) -> dict[int, tuple[str, float, float]]:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):  # no QEMU there now
            return {}
        return thread_times(pid)

    def usage(self, start: float, end: float) -> dict[str, dict[str, float]]:
        return cpu_usage(self.samples, start, end)


class MachineSampler(Sampler):
    """The whole machine's busy and total CPU time (/proc/stat) every INTERVAL seconds,
    for the busy share of any stretch of time afterwards."""

    def __init__(self, interval: float = 0.5) -> None:
        super().__init__(interval)

    def read(self) -> tuple[int, int]:
        return cpu_times()

    def busy_pct(self, start: float, end: float) -> float | None:
        """The machine's busy share from the last sample at or before START to the first
        at or after END; None if the samples do not cover it."""
        before = [v for t, v in self.samples if t <= start]
        after = [v for t, v in self.samples if t >= end]
        if not before or not after:
            return None
        return busy_pct(before[-1], after[0])


def cpu_usage(samples: list[Sample], start: float, end: float) -> dict[str, dict[str, float]]:
    """From START to END (epoch seconds), per thread name, in percent: "cpu" the time its
    threads ran, "wait" the time they waited for a CPU. Measured between the samples that
    bracket the window (the last at or before START, the first at or after END) and as a
    share of the time between them, so that a window shorter than the sampling interval
    is not split at an arbitrary sample. Threads of the same name add up; a thread's last
    sample counts even if it ended before END."""
    if not samples:
        return {"cpu": {}, "wait": {}}
    before = [(t, sample) for t, sample in samples if t <= start]
    first, base = before[-1] if before else samples[0]
    last: dict[int, tuple[str, float, float]] = {}
    final = end
    for t, sample in samples:
        if first < t:
            last.update(sample)
            final = t
            if t >= end:
                break
    seconds = max(final - first, 1e-3)
    totals: dict[str, dict[str, float]] = {"cpu": {}, "wait": {}}
    for tid, (name, ran, waited) in last.items():
        _, ran_before, waited_before = base.get(tid, (name, 0.0, 0.0))
        for kind, spent in (("cpu", ran - ran_before), ("wait", waited - waited_before)):
            totals[kind][name] = totals[kind].get(name, 0.0) + spent
    return {
        kind: {
            name: round(100 * spent / seconds, 1)
            for name, spent in sorted(used.items())
            if spent > 0
        }
        for kind, used in totals.items()
    }
