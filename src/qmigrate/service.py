"""What a migration did to a service's requests: figures from an open-loop client's log.

An open-loop client sends each request on a fixed schedule, never waiting for the one
before, and keeps for each its send time, reply time (or none: an error or a timeout), its
operation and key; times are seconds since the migrate command, the probes' one clock.
:func:`service_figures` derives from such a log what a user of the service saw before,
during and after the migration (issue 15): latency percentiles, the longest time with no
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
) -> dict[str, Any]:
    """The figures of one open-loop client's REQUESTS around a migration that ran from the
    migrate command (0) to END (s); RECONNECTS are [lost, reconnected] times (s)."""
    periods = {
        "before": [r for r in requests if r[0] < 0.0],
        "during": [r for r in requests if 0.0 <= r[0] <= end],
        "after": [r for r in requests if r[0] > end],
    }
    figures = {name: latency_figures(part) for name, part in periods.items()}
    p99 = figures["before"]["p99_ms"]
    delayed = None
    if p99 is not None:
        limit = DELAY_FACTOR * p99
        delayed = sum(
            1
            for r in requests
            if r[0] >= 0.0 and (r[4] != "ok" or r[1] is None or (r[1] - r[0]) * 1000 > limit)
        )
    in_order = sorted(requests, key=lambda r: r[0])
    waited = silences([(r[0], r[1] if r[4] == "ok" else None) for r in in_order])
    gaps = [(b - a, a) for a, b in waited]
    longest = max(gaps, default=None)
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
        "delayed": delayed,
        "delay_limit_ms": None if p99 is None else round(DELAY_FACTOR * p99, 3),
        "reconnects": len(reconnects or []),
        "reconnect_ms": round(sum(lost) * 1000, 3) if lost else 0.0,
        "throughput": throughput(requests, math.floor(lo / BIN) * BIN, hi + BIN),
    }
