"""The probe role's open-loop client (roles/probe/files/qmigrate-service) with a fake
service in the process: its schedule, its key and operation mixes, a stall that delays
the queued requests from when they were due, errors and reconnects, and the load phase."""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections import Counter

import pytest

from qmigrate.service import parse_client, service_figures
from tests.unit.frames import role_program


def client_program():
    return role_program("qmigrate-service")


class FakeService:
    """A key-value service that answers at once, except while stalled (a migration's
    switchover), and fails the requests of a chosen window (a connection lost)."""

    def __init__(self, stall=None, fail=None, connect_delay=0.0):
        self.data: dict = {}
        self.stall, self.fail = stall, fail
        self.connect_delay = connect_delay
        self.lock = threading.Lock()
        self.connections = 0
        self.t0 = time.time()

    def _serve(self):
        now = time.time() - self.t0
        if self.fail and self.fail[0] <= now < self.fail[1]:
            raise ConnectionError("connection reset")
        if self.stall and self.stall[0] <= now < self.stall[1]:
            time.sleep(self.stall[1] - now)

    def driver(self):
        service = self

        class Conn:
            timeouts = (TimeoutError,)

            def connect(self):
                if service.fail and service.fail[0] <= time.time() - service.t0 < service.fail[1]:
                    raise ConnectionError("refused")
                time.sleep(service.connect_delay)
                with service.lock:
                    service.connections += 1

            def read(self, key):
                service._serve()
                return service.data.get(key)

            def update(self, key, value):
                service._serve()
                service.data[key] = value

            def load(self, items):
                service.data.update(items)

            def close(self):
                pass

        return Conn()


def args(**changes) -> argparse.Namespace:
    base = dict(
        service="redis", target="10.10.1.100", port=6379, rate=1000.0, duration=1.0,
        mix="a", keys="uniform", records=100, value_size=10, timeout=1.0, connections=4,
        seed=1, retry_for=1.0,
    )  # fmt: skip
    base.update(changes)
    return argparse.Namespace(**base)


def test_mixes_and_key_distributions_follow_ycsb():
    program = client_program()
    import random

    for mix, reads in (("a", 0.5), ("b", 0.95), ("c", 1.0)):
        plan = program.schedule(args(mix=mix, duration=10.0), random.Random(3))
        share = sum(op == "read" for op, _ in plan) / len(plan)
        assert share == pytest.approx(reads, abs=0.02)
    zipf = Counter(
        k for _, k in program.schedule(args(keys="zipfian", duration=10.0), random.Random(3))
    )
    uniform = Counter(k for _, k in program.schedule(args(duration=10.0), random.Random(3)))
    # Zipfian: the first key is the hottest by far; uniform: no key is.
    assert zipf[0] > 10 * statistics.mean(zipf.values())
    assert max(uniform.values()) < 3 * statistics.mean(uniform.values())


def test_requests_go_out_on_schedule_and_each_is_recorded():
    program = client_program()
    service = FakeService()

    found = program.run(args(), make=service.driver)

    requests = found["requests"]
    assert len(requests) == 1000 and all(r[4] == "ok" for r in requests)
    dues = [r[0] for r in requests]
    assert dues == sorted(dues) and dues[-1] - dues[0] == pytest.approx(0.999, abs=0.001)
    assert statistics.median(r[1] for r in requests) < 5.0
    assert len(service.data) > 0 and found["reconnects"] == []


def test_a_stalled_service_delays_the_requests_due_meanwhile_from_when_they_were_due():
    """Open loop: the requests due during a 200 ms stall wait for it, queued behind the
    workers, and their latency counts from when they were due, not from when sent."""
    program = client_program()
    service = FakeService(stall=(0.4, 0.6))

    found = program.run(args(), make=service.driver)

    requests = found["requests"]
    assert len(requests) == 1000 and all(r[4] == "ok" for r in requests)
    t0 = service.t0
    stalled = [r for r in requests if 0.45 <= r[0] - t0 < 0.55]
    assert stalled and all(r[1] >= 40 for r in stalled)
    # The first due in the stall waited for all of it.
    first = min((r for r in requests if r[0] - t0 >= 0.41), key=lambda r: r[0])
    assert first[1] >= 150


def test_connecting_is_done_before_the_schedule_starts():
    """Connections that take 300 ms to make are all made before the first request is due:
    connecting is not measured as the service's latency."""
    program = client_program()
    service = FakeService(connect_delay=0.3)

    found = program.run(args(duration=0.5), make=service.driver)

    requests = found["requests"]
    assert len(requests) == 500 and all(r[4] == "ok" for r in requests)
    assert requests[0][0] - service.t0 >= 0.3
    assert max(r[1] for r in requests) < 100


def test_a_missing_client_library_is_reported_at_once(monkeypatch, capsys):
    program = client_program()
    monkeypatch.setitem(__import__("sys").modules, "pymemcache", None)
    started = time.monotonic()

    rc = program.main(["load", "--service", "memcached", "--target", "10.10.1.100"])

    assert rc == 3 and time.monotonic() - started < 1.0
    assert "install python3-pymemcache" in capsys.readouterr().err


def test_errors_are_recorded_and_the_connections_come_back():
    program = client_program()
    service = FakeService(fail=(0.3, 0.4))

    found = program.run(args(), make=service.driver)

    outcomes = Counter(r[4] for r in found["requests"])
    assert outcomes["error"] >= 1 and outcomes["ok"] > 800
    assert found["reconnects"] and all(back is not None for _, back in found["reconnects"])
    assert all(back - lost >= 0 for lost, back in found["reconnects"])
    assert service.connections > 4


def test_the_load_phase_fills_the_data_set_and_waits_for_the_service():
    program = client_program()
    service = FakeService(fail=(0.0, 0.3))

    found = program.load(args(records=1000), make=service.driver)

    assert found["error"] is None and found["loaded"] == 1000
    assert len(service.data) == 1000 and service.data["user999"] == b"v" * 10


def test_a_service_that_never_comes_up_is_reported():
    program = client_program()
    service = FakeService(fail=(0.0, 60.0))
    found = program.load(args(retry_for=0.3), make=service.driver)
    assert found["loaded"] == 0 and "ConnectionError" in found["error"]


def test_bad_arguments_are_refused():
    program = client_program()
    with pytest.raises(SystemExit):
        program.main(
            ["run", "--service", "redis", "--target", "x", "--rate", "0", "--duration", "1"]
        )
    with pytest.raises(SystemExit):
        program.main(["load", "--service", "nginx", "--target", "x"])


def test_its_log_gives_the_service_figures_on_the_migrate_commands_clock():
    """The client's output, put on the migrate command's clock, gives the stall back."""
    program = client_program()
    service = FakeService(stall=(0.4, 0.6))
    found = program.run(args(), make=service.driver)
    t0 = service.t0 + 0.3  # the migrate command, 0.3 s into the run

    log = parse_client(found, t0)
    figures = service_figures(log["requests"], end=0.5, reconnects=log["reconnects"])

    # The schedule starts once the connections are made, a moment after the service's
    # clock: the requests due before the migrate command are those of the time between.
    first_due = found["requests"][0][0]
    expected_before = (t0 - first_due) * 1000
    assert figures["periods"]["before"]["sent"] == pytest.approx(expected_before, abs=2)
    assert figures["failed"] == 0 and figures["timed_out"] == 0
    # The stall began 0.1 s after the migrate command and lasted 0.2 s.
    assert figures["longest_silence_ms"] == pytest.approx(200, abs=30)
    assert figures["longest_silence_from"] == pytest.approx(0.1, abs=0.02)
    assert figures["delayed"] > 100
