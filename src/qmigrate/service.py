"""What a migration did to a service's requests: figures from an open-loop client's log.

An open-loop client sends each request on a fixed schedule, never waiting for the one
before, and keeps for each its send time, reply time (or none: an error or a timeout), its
operation and key; times are seconds since the migrate command, the probes' one clock.
:func:`service_figures` derives from such a log what a user of the service saw before,
during and after the migration: latency percentiles, the longest time with no
reply while requests waited, requests failed or timed out, throughput per 100 ms, and how
many requests were delayed past ten times the pre-migration 99th percentile.

A request is [sent, replied, op, key, outcome]: REPLIED is None unless OUTCOME is "ok".
"""

from __future__ import annotations

import math
from typing import Any

from qmigrate.anatomy import silences

# Throughput is counted in bins of this many seconds.
BIN = 0.1
# A request is delayed when it took longer than this many times the pre-migration p99.
DELAY_FACTOR = 10.0
PERCENTILES = (50.0, 99.0, 99.9)
# A request is waiting at most this long after the source stopped the guest (at the rates
# the client sustains, one is sent every 0.5-1 ms), s.
OUTAGE_SLACK = 0.002


def parse_client(doc: dict[str, Any], t0: float) -> dict[str, Any]:
    """The open-loop client's output (roles/probe/files/qmigrate-service run: per request
    [due, latency_ms, op, key, outcome], epoch seconds) as requests on the migrate command's
    clock (T0 its epoch time), with its reconnects [lost, back]."""
    requests = [
        [
            round(due - t0, 6),
            None if latency is None else round(due - t0 + latency / 1000.0, 6),
            op,
            key,
            outcome,
        ]
        for due, latency, op, key, outcome in doc.get("requests", [])
    ]
    reconnects = [
        [round(lost - t0, 6), None if back is None else round(back - t0, 6)]
        for lost, back in doc.get("reconnects", [])
    ]
    return {"requests": requests, "reconnects": reconnects}


def percentile(values: list[float], q: float) -> float | None:
    """The Q-th percentile of VALUES (nearest rank), or None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered) - 1e-9))
    return ordered[rank - 1]


def latency_figures(requests: list[list[Any]]) -> dict[str, Any]:
    """Latency percentiles and maximum (ms) of the answered REQUESTS, and their counts."""
    latencies = [(r[1] - r[0]) * 1000 for r in requests if r[4] == "ok" and r[1] is not None]
    out: dict[str, Any] = {
        "sent": len(requests),
        "answered": len(latencies),
        "failed": sum(1 for r in requests if r[4] == "error"),
        "timed_out": sum(1 for r in requests if r[4] == "timeout"),
    }
    for q in PERCENTILES:
        value = percentile(latencies, q)
        out[f"p{q:g}_ms"] = None if value is None else round(value, 3)
    out["max_ms"] = round(max(latencies), 3) if latencies else None
    return out


def throughput(requests: list[list[Any]], lo: float, hi: float) -> list[list[float]]:
    """Replies per second in bins of BIN seconds from LO to HI: [[bin start, ops/s]]."""
    bins = max(1, math.ceil((hi - lo) / BIN))
    counts = [0] * bins
    for r in requests:
        if r[4] == "ok" and r[1] is not None and lo <= r[1] < hi:
            counts[min(bins - 1, int((r[1] - lo) / BIN))] += 1
    return [[round(lo + i * BIN, 6), round(n / BIN, 1)] for i, n in enumerate(counts)]


def service_figures(
    requests: list[list[Any]],
    end: float,
    reconnects: list[list[float]] | None = None,
    switchover: tuple[float, float] | None = None,
    stop: float | None = None,
) -> dict[str, Any]:
    """The figures of one open-loop client's REQUESTS around a migration that ran from the
    migrate command (0) to END (s); RECONNECTS are [lost, reconnected] times (s). With
    SWITCHOVER (lo, hi), also the longest silence that began there (where the
    guest-observed downtime is sought); with STOP (the source stopped the guest), the
    outage as the requests saw it: the silence under way then (or begun within
    OUTAGE_SLACK after it). After the outage a request whose segments were lost meanwhile
    may wait out TCP's retransmission timer: the longest at the switchover can be that."""
    # Before: sent and answered before the migrate command; a request still waiting for
    # its reply then is the migration's, with those sent while it ran.
    periods: dict[str, list[list[Any]]] = {"before": [], "during": [], "after": []}
    for r in requests:
        if r[0] > end:
            periods["after"].append(r)
        elif r[0] < 0.0 and r[4] == "ok" and r[1] is not None and r[1] < 0.0:
            periods["before"].append(r)
        else:
            periods["during"].append(r)
    figures = {name: latency_figures(part) for name, part in periods.items()}
    p99 = figures["before"]["p99_ms"]
    delayed = None
    last_delayed = None
    if p99 is not None:
        limit = DELAY_FACTOR * p99
        late = [
            r[0]
            for r in periods["during"] + periods["after"]
            if r[4] != "ok" or r[1] is None or (r[1] - r[0]) * 1000 > limit
        ]
        delayed = len(late)
        last_delayed = max(late, default=None)
    in_order = sorted(requests, key=lambda r: r[0])
    waited = silences([(r[0], r[1] if r[4] == "ok" else None) for r in in_order])
    gaps = [(b - a, a) for a, b in waited]
    longest = max(gaps, default=None)
    at_switchover = (
        max((g for g in gaps if switchover[0] <= g[1] < switchover[1]), default=None)
        if switchover is not None
        else None
    )
    outage = (
        next((g for g in gaps if g[1] <= stop + OUTAGE_SLACK < g[1] + g[0]), None)
        if stop is not None
        else None
    )
    sent = [r[0] for r in requests]
    lo = min(sent, default=0.0)
    hi = max((r[1] for r in requests if r[1] is not None), default=lo)
    lost = [b - a for a, b in reconnects or [] if b is not None]
    return {
        "periods": figures,
        "failed": sum(f["failed"] for f in figures.values()),
        "timed_out": sum(f["timed_out"] for f in figures.values()),
        "longest_silence_ms": None if longest is None else round(longest[0] * 1000, 3),
        "longest_silence_from": None if longest is None else round(longest[1], 6),
        "switchover_silence_ms": (
            None if at_switchover is None else round(at_switchover[0] * 1000, 3)
        ),
        "switchover_silence_from": None if at_switchover is None else round(at_switchover[1], 6),
        "outage_silence_ms": None if outage is None else round(outage[0] * 1000, 3),
        "outage_silence_from": None if outage is None else round(outage[1], 6),
        "delayed": delayed,
        "delay_limit_ms": None if p99 is None else round(DELAY_FACTOR * p99, 3),
        # When the last of them was sent: the service is back to normal after it
        "last_delayed_at": None if last_delayed is None else round(last_delayed, 6),
        "reconnects": len(reconnects or []),
        "reconnect_ms": round(sum(lost) * 1000, 3) if lost else 0.0,
        "throughput": throughput(requests, math.floor(lo / BIN) * BIN, hi + BIN),
    }


# How far the client's clock, corrected by its probe's offset, may stand from the
# destination's capture stamps (s).
CLOCK_SLACK = 0.001
# The settings of a run that the record keeps beside its requests.
SETTINGS = ("service", "rate", "mix", "keys", "records", "value_size", "connections")


def parse_service(doc: dict[str, Any] | None, t0: float, workload: dict | None) -> dict[str, Any]:
    """The service client's series for the record: its settings (WORKLOAD, the window's),
    its load phase, and its requests and reconnects on the migrate command's clock (T0)."""
    workload = workload or {}
    out: dict[str, Any] = {k: workload.get(k) for k in SETTINGS}
    out["load"] = workload.get("load")
    if not doc:
        return {**out, "error": "no output from the service client", "requests": []}
    out.update({k: doc.get(k, out.get(k)) for k in SETTINGS})
    out["launched"] = round(float(doc["launched"]) - t0, 6) if doc.get("launched") else None
    out["behind_max_ms"] = doc.get("behind_max_ms")
    out.update(parse_client(doc, t0))
    return out


def phase_of(at: float | None, spans: list[tuple[str, float, float]], end: float | None) -> str:
    """The name of the migration's phase at AT (one of SPANS), or before/after it."""
    if at is None:
        return "-"
    for name, lo, hi in spans:
        if lo <= at < hi:
            return name
    if at < 0.0:
        return "before the migration"
    if end is not None and at >= end:
        return "after the migration"
    return "migration"


def workload_figures(
    service: dict[str, Any] | None,
    end: float | None,
    switchover: tuple[float, float] | None,
    spans: list[tuple[str, float, float]],
    ping_silence_ms: float | None,
    stop: float | None = None,
    marks: dict[str, float | None] | None = None,
    guest_tcp: list[list[float]] | None = None,
) -> dict[str, Any]:
    """The record's figures of a service under load (SERVICE, the series of
    :func:`parse_service`) around a migration that ended at END (s; None: no migration)
    and whose source stopped the guest at STOP: its outage beside the pings' (their silence
    under way at the stop, from the anatomy's MARKS; without them PING_SILENCE_MS, the
    longest at the switchover; not less the round trip: both are times with a request
    waiting and no reply), and beside the anatomy's marks on the wire: when the path to the
    destination was back and when the client's TCP first reached it. The requests in flight
    at the stop were lost with the source unless the guest had taken them in; a lost one is
    sent again only when its connection's retransmission timer fires (at least 200 ms on
    Linux, more after a jittery round trip), so the outage can outlast the pings' silence
    by that wait, which the capture shows, or the guest's own, for its replies lost with
    the source (its timer stood still while it was stopped). GUEST_TCP, the runs of the
    guest's TCP frames on the destination's NIC, mark the reply that ended the outage."""
    if not service:
        return {"measured": False}
    out: dict[str, Any] = {"measured": True, **{k: service.get(k) for k in SETTINGS}}
    out["client_behind_max_ms"] = service.get("behind_max_ms")
    if service.get("error"):
        out["error"] = service["error"]
    if not service.get("requests"):
        return out
    figures = service_figures(
        service["requests"],
        end if end is not None else math.inf,
        service.get("reconnects"),
        switchover if end is not None else None,
        stop if end is not None else None,
    )
    out.update(figures)
    # Named by its middle: a silence that began as the migrate command was given (a
    # request sent just before it, still waiting) is the setup phase's.
    began, lasted = figures["longest_silence_from"], figures["longest_silence_ms"]
    middle = None if began is None else began + lasted / 2000
    out["longest_silence_phase"] = phase_of(middle, spans, end)
    marks = marks or {}
    # The pings' own outage, measured as the requests' is: their silence under way at the
    # stop (the anatomy's), not the longest at the switchover, which may be a later one
    # (a guest slow to answer for a while after it resumed).
    waiting, answered = marks.get("client_waiting"), marks.get("first_ping_answered")
    ping_from = None
    if waiting is not None and answered is not None:
        ping_silence_ms, ping_from = round((answered - waiting) * 1000, 3), waiting
    out["ping_silence_ms"] = ping_silence_ms
    out["ping_silence_from"] = ping_from
    mine = figures["outage_silence_ms"]
    out["switchover_vs_ping_ms"] = (
        round(mine - ping_silence_ms, 3)
        if mine is not None and ping_silence_ms is not None
        else None
    )
    tcp_at, path_at = marks.get("tcp_resumed"), marks.get("path_restored")
    ended = None if mine is None else figures["outage_silence_from"] + mine / 1000
    # Negative: the guest answered before any of the client's segments reached the
    # destination (a request it held at the stop, or a reply its own timer sent again).
    out["outage_end_vs_tcp_ms"] = (
        None if ended is None or tcp_at is None else round((ended - tcp_at) * 1000, 3)
    )
    out["tcp_waited_after_path_ms"] = (
        None if tcp_at is None or path_at is None else round((tcp_at - path_at) * 1000, 3)
    )
    out["outage_end_after_guest_tcp_ms"] = (
        None if ended is None else _after_last_run(ended, guest_tcp or [])
    )
    return out


def _after_last_run(at: float, runs: list[list[float]]) -> float | None:
    """How long after the last of RUNS' frames at or before AT (ms): 0 within a run (its
    frames are at most the capture's run gap apart), negative for a run that began just
    after AT (clock slack); None without one."""
    begun = [r for r in runs if r[0] <= at + CLOCK_SLACK]
    if not begun:
        return None
    first, last = max(begun, key=lambda r: r[0])[:2]
    if at < first:
        return round((at - first) * 1000, 3)
    return 0.0 if at <= last else round((at - last) * 1000, 3)


def summary_line(figures: dict[str, Any]) -> str | None:
    """One line of the run's summary about its service under load, or None without one."""
    if not figures.get("measured"):
        return None
    rate = figures.get("rate")
    how = [figures.get("mix"), figures.get("keys"), None if rate is None else f"{rate:.0f}/s"]
    name = f"{figures.get('service')} ({', '.join(str(h) for h in how if h is not None)})"
    if "periods" not in figures:
        return f"{name}: {figures.get('error') or 'no requests'}"
    p = figures["periods"]
    return (
        f"{name}: p99 {_n(p['before']['p99_ms'], 1)} ms before, "
        f"{_n(p['during']['p99_ms'], 1)} during, {_n(p['after']['p99_ms'], 1)} after; "
        f"longest stall {_n(figures['longest_silence_ms'])} ms "
        f"({figures['longest_silence_phase']}), "
        f"{_n(figures['outage_silence_ms'])} ms at the switchover "
        f"(ping {_n(figures['ping_silence_ms'])} ms, longest there "
        f"{_n(figures['switchover_silence_ms'])} ms); {figures['failed']} failed, "
        f"{figures['timed_out']} timed out, {_n(figures['delayed'])} past 10x p99"
    )


def _n(value: Any, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
