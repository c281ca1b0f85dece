"""Unit tests for a service's figures from an open-loop client's request log
(src/qmigrate/service.py): synthetic logs with a stall, errors and reconnects."""

from __future__ import annotations

import pytest

from qmigrate.service import (
    _after_last_run,
    parse_service,
    percentile,
    phase_of,
    service_figures,
    summary_line,
    throughput,
    workload_figures,
)


def log(
    rate: float = 1000.0,
    lo: float = -2.0,
    hi: float = 3.0,
    latency: float = 0.0005,
    stall: tuple[float, float] | None = None,
    failed: tuple[float, float] | None = None,
) -> list[list]:
    """Requests sent every 1/RATE s from LO to HI, answered in LATENCY s; those sent in
    STALL answered only when it ends; those sent in FAILED answered with an error."""
    out = []
    n = round((hi - lo) * rate)
    for i in range(n):
        sent = round(lo + i / rate, 6)
        key = f"user{i % 100}"
        if failed and failed[0] <= sent < failed[1]:
            out.append([sent, None, "read", key, "error"])
        elif stall and stall[0] <= sent < stall[1]:
            out.append([sent, stall[1] + latency, "read", key, "ok"])
        else:
            out.append([sent, sent + latency, "update" if i % 2 else "read", key, "ok"])
    return out


def test_percentiles_are_nearest_rank():
    values = list(range(1, 1001))
    assert percentile(values, 50) == 500
    assert percentile(values, 99) == 990
    assert percentile(values, 99.9) == 999
    assert percentile([], 50) is None


def test_a_stall_during_the_migration_shows_in_every_figure():
    figures = service_figures(log(stall=(0.5, 0.6)), end=1.0)

    before, during, after = (figures["periods"][p] for p in ("before", "during", "after"))
    assert before["p50_ms"] == pytest.approx(0.5) and before["max_ms"] == pytest.approx(0.5)
    assert after["p99_ms"] == pytest.approx(0.5)
    # The request sent as the stall began waited all of it.
    assert during["max_ms"] == pytest.approx(100.5)
    # 1001 requests sent from 0 to 1.0 s, 100 of them in the stall: the 11th longest
    assert during["p99_ms"] == pytest.approx(90.5)
    assert figures["longest_silence_ms"] == pytest.approx(100.5)
    assert figures["longest_silence_from"] == pytest.approx(0.5)
    # Past 10x the pre-migration p99 (5 ms): those sent in the stall's first 95.5 ms.
    assert figures["delay_limit_ms"] == pytest.approx(5.0)
    assert figures["delayed"] == 96
    assert figures["last_delayed_at"] == pytest.approx(0.595)
    assert figures["failed"] == 0 and figures["timed_out"] == 0


def test_throughput_per_100_ms_drops_to_nothing_in_a_stall_and_catches_up():
    figures = service_figures(log(stall=(0.5, 0.7)), end=1.0)
    rates = dict((round(t, 1), r) for t, r in figures["throughput"])

    assert rates[0.3] == pytest.approx(1000.0)
    assert rates[0.5] == 0.0 and rates[0.6] == 0.0
    # The 200 requests of the stall answered at once, beside the bin's own 100.
    assert rates[0.7] == pytest.approx(3000.0)


def test_failed_requests_are_counted_and_kept_waiting_until_the_next_reply():
    figures = service_figures(log(failed=(0.2, 0.25)), end=1.0, reconnects=[[0.2, 0.25]])

    assert figures["failed"] == 50 and figures["periods"]["during"]["failed"] == 50
    assert figures["periods"]["during"]["answered"] == 1001 - 50
    # From the first failed request (0.2) to the next reply (0.25's, 0.5 ms later).
    assert figures["longest_silence_ms"] == pytest.approx(50.5)
    assert figures["reconnects"] == 1 and figures["reconnect_ms"] == pytest.approx(50.0)
    assert figures["delayed"] == 50


def test_a_client_that_sent_nothing_is_no_silence_of_the_service():
    requests = [r for r in log() if not 0.4 <= r[0] < 0.6]
    figures = service_figures(requests, end=1.0)
    assert figures["longest_silence_ms"] == pytest.approx(0.5)


def test_timeouts_are_counted_apart_from_errors():
    requests = log()
    for r in requests[2500:2510]:
        r[1], r[4] = None, "timeout"
    figures = service_figures(requests, end=1.0)
    assert figures["timed_out"] == 10 and figures["failed"] == 0


def test_without_requests_before_the_migration_nothing_counts_as_delayed():
    figures = service_figures(log(lo=0.0), end=1.0)
    assert figures["delayed"] is None and figures["periods"]["before"]["p99_ms"] is None


def test_throughput_bins_cover_the_span():
    requests = [[0.05, 0.06, "read", "k", "ok"], [0.15, 0.16, "read", "k", "ok"]]
    assert throughput(requests, 0.0, 0.2) == [[0.0, 10.0], [0.1, 10.0]]


def test_a_request_waiting_when_the_migration_began_is_the_migrations():
    """Sent before the migrate command but answered after it: counted during, not before,
    so the baseline is the service's own."""
    requests = [[-0.2, -0.1995, "read", 1, "ok"], [-0.01, 0.3, "read", 2, "ok"]]
    requests += [[0.1, 0.1005, "read", 3, "ok"], [2.0, 2.0005, "read", 4, "ok"]]

    figures = service_figures(requests, end=1.0)

    assert figures["periods"]["before"]["sent"] == 1
    assert figures["periods"]["during"]["sent"] == 2
    assert figures["periods"]["during"]["max_ms"] == pytest.approx(310.0)
    assert figures["periods"]["after"]["sent"] == 1
    # 10x the 0.5 ms before: the one kept waiting across the migrate command
    assert figures["delayed"] == 1


def test_the_switchover_silence_is_found_beside_a_longer_one_in_setup():
    requests = log(stall=(0.05, 0.35)) + log(lo=3.0, hi=4.0)
    requests = [r for r in requests if not 1.2 <= r[0] < 1.28] + [
        [r[0], 1.28 + 0.0005, r[2], r[3], "ok"] for r in requests if 1.2 <= r[0] < 1.28
    ]
    requests.sort(key=lambda r: r[0])

    figures = service_figures(requests, end=1.3, switchover=(0.8, 4.0))

    assert figures["longest_silence_ms"] == pytest.approx(300.5)
    assert figures["switchover_silence_ms"] == pytest.approx(80.5)
    assert figures["switchover_silence_from"] == pytest.approx(1.2)


def service_doc(t0: float, requests: list[list]) -> dict:
    """The client's output for REQUESTS given on the migrate command's clock (T0 epoch)."""
    return {
        "service": "redis", "rate": 1000.0, "mix": "a", "keys": "zipfian", "records": 100,
        "value_size": 10, "connections": 4, "launched": t0 - 2.0, "behind_max_ms": 1.5,
        "requests": [
            [t0 + r[0], None if r[1] is None else (r[1] - r[0]) * 1000, r[2], r[3], r[4]]
            for r in requests
        ],
        "reconnects": [[t0 + 0.2, t0 + 0.25]],
    }  # fmt: skip


def test_the_records_series_and_figures_from_the_clients_output():
    t0 = 1_700_000_000.0
    workload = {"service": "redis", "rate": 1000.0, "load": {"loaded": 100, "error": None}}
    series = parse_service(service_doc(t0, log(stall=(0.5, 0.6))), t0, workload)

    assert series["load"] == {"loaded": 100, "error": None}
    assert series["launched"] == pytest.approx(-2.0) and series["behind_max_ms"] == 1.5
    assert series["requests"][0][0] == pytest.approx(-2.0, abs=1e-6)
    assert series["reconnects"] == [[pytest.approx(0.2), pytest.approx(0.25)]]

    spans = [("setup", 0.0, 0.1), ("pre-copy", 0.1, 0.5), ("stop-and-copy", 0.5, 0.6)]
    figures = workload_figures(series, 0.7, (0.1, 3.6), spans, ping_silence_ms=90.0, stop=0.5)

    assert figures["measured"] and figures["service"] == "redis"
    assert figures["client_behind_max_ms"] == 1.5
    assert figures["longest_silence_phase"] == "stop-and-copy"
    assert figures["switchover_silence_ms"] == pytest.approx(100.5)
    assert figures["outage_silence_ms"] == pytest.approx(100.5)
    assert figures["switchover_vs_ping_ms"] == pytest.approx(10.5)
    line = summary_line(figures)
    assert line.startswith("redis (a, zipfian, 1000/s): p99 0.5 ms before")
    assert "longest stall 100 ms (stop-and-copy)" in line
    assert "100 ms at the switchover (ping 90 ms, longest there 100 ms)" in line


def test_the_outage_is_the_silence_under_way_at_the_stop_not_a_later_one():
    """The guest stopped at 1.0 and ran again at 1.08; a few requests answered then, while
    those sent in the outage, their segments lost, waited out TCP's retransmission timer
    until 1.3: the outage is the first silence, the longest at the switchover the second."""
    requests = []
    for i in range(3000):
        sent = round(i / 1000, 6)
        if 0.999 <= sent < 1.08:
            replied = 1.3 + 0.0005
        elif 1.08 <= sent < 1.09:
            replied = sent + 0.0005
        elif 1.09 <= sent < 1.3:
            replied = 1.3 + 0.0005
        else:
            replied = sent + 0.0005
        requests.append([sent, replied, "read", i, "ok"])
    # The first replies after the outage: those queued in the guest at the stop.
    for r in requests:
        if 0.995 <= r[0] < 0.999:
            r[1] = 1.08 + 0.0005

    figures = service_figures(requests, end=1.1, switchover=(0.5, 4.0), stop=1.0)

    assert figures["outage_silence_from"] == pytest.approx(0.995)
    assert figures["outage_silence_ms"] == pytest.approx(85.5)
    assert figures["switchover_silence_ms"] == pytest.approx(211.0)
    assert figures["switchover_silence_from"] == pytest.approx(1.0895)


def test_an_outage_longer_than_the_pings_is_set_beside_the_clients_tcp_on_the_wire():
    """Every request in flight at the stop (0.5) was lost with the source; the path was
    back at 0.6 (the pings' silence ends there) but the client's TCP reached the
    destination only when its retransmission timer fired, at 0.9: the outage, 0.4 s, is
    the pings' silence and that wait, and ends as the guest answers that segment."""
    series = {"service": "redis", "requests": log(stall=(0.5, 0.9)), "reconnects": []}
    spans = [("stop-and-copy", 0.5, 0.6)]
    marks = {"path_restored": 0.6, "tcp_resumed": 0.9}
    # The guest's TCP frames on the destination: a window update at 0.65, then its reply
    # to the retransmitted request, 0.2 ms before the client took it.
    guest_tcp = [[0.65, 0.65, 1], [0.9003, 0.95, 40]]

    figures = workload_figures(
        series, 0.7, (0.1, 3.6), spans, 100.0, stop=0.5, marks=marks, guest_tcp=guest_tcp
    )

    assert figures["switchover_vs_ping_ms"] == pytest.approx(300.5)
    assert figures["tcp_waited_after_path_ms"] == pytest.approx(300.0)
    assert figures["outage_end_vs_tcp_ms"] == pytest.approx(0.5)
    assert figures["outage_end_after_guest_tcp_ms"] == 0.0
    # Without the anatomy's marks of the pings, their longest silence at the switchover.
    assert (figures["ping_silence_ms"], figures["ping_silence_from"]) == (100.0, None)
    marks.update(client_waiting=0.499, first_ping_answered=0.61)
    mine = workload_figures(series, 0.7, (0.1, 3.6), spans, 100.0, stop=0.5, marks=marks)
    assert mine["ping_silence_ms"] == pytest.approx(111.0) and mine["ping_silence_from"] == 0.499
    assert mine["switchover_vs_ping_ms"] == pytest.approx(289.5)
    # Without a capture there is nothing to set it beside.
    bare = workload_figures(series, 0.7, (0.1, 3.6), spans, 100.0, stop=0.5)
    assert bare["outage_end_vs_tcp_ms"] is None and bare["tcp_waited_after_path_ms"] is None
    assert bare["outage_end_after_guest_tcp_ms"] is None


def test_the_reply_that_ended_the_outage_is_the_guests_last_frame_before_it():
    assert _after_last_run(1.0, [[0.2, 0.3, 4], [0.9, 0.98, 9]]) == pytest.approx(20.0)
    assert _after_last_run(1.0, [[0.2, 0.3, 4], [0.9, 1.2, 9]]) == 0.0
    # Stamped just after the client's reply: the clocks' slack.
    assert _after_last_run(1.0, [[1.0004, 1.1, 3]]) == pytest.approx(-0.4)
    assert _after_last_run(1.0, [[1.2, 1.3, 3]]) is None
    assert _after_last_run(1.0, []) is None


def test_a_silence_is_named_by_the_phase_of_its_middle():
    """Begun a few ms before the migrate command (a request sent then still waited) and
    lasting through the setup phase: the setup phase's."""
    series = {"service": "redis", "requests": log(stall=(-0.004, 0.2)), "reconnects": []}
    spans = [("setup", 0.0, 0.25), ("pre-copy", 0.25, 0.6)]

    figures = workload_figures(series, 0.7, (0.2, 3.6), spans, None)

    assert figures["longest_silence_from"] < 0
    assert figures["longest_silence_phase"] == "setup"


def test_a_client_that_left_nothing_says_so():
    series = parse_service(None, 0.0, {"service": "memcached", "rate": 500.0})
    figures = workload_figures(series, 1.0, (0.0, 4.0), [], None)

    assert figures["measured"] and "no output" in figures["error"]
    assert "periods" not in figures
    assert summary_line(figures) == "memcached (500/s): no output from the service client"
    assert workload_figures(None, 1.0, None, [], None) == {"measured": False}
    assert summary_line({"measured": False}) is None


def test_phase_of_a_time():
    spans = [("setup", 0.0, 0.2), ("pre-copy", 0.2, 0.5)]
    assert phase_of(0.1, spans, 0.6) == "setup"
    assert phase_of(-1.0, spans, 0.6) == "before the migration"
    assert phase_of(0.7, spans, 0.6) == "after the migration"
    assert phase_of(None, spans, 0.6) == "-"
