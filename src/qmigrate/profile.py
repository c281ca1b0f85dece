"""What a migration did to the guest's connections: probe series on one clock, and the
figures derived from them.

The probe role leaves raw output in ``<run dir>/probe/`` (iperf3 JSON, ping -D lines,
interface counter samples, window.json). :func:`ingest` turns it into series whose times
are seconds since the migrate command (QEMU's timeline and events use the same zero),
:func:`derive` computes the figures from a record alone, and ``python -m qmigrate.profile
RUN_DIR`` does both, writes them into run.json and draws the report.
"""

from __future__ import annotations

import json
import re
import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

from qmigrate.anatomy import anatomy, destination_runs, ping_silence
from qmigrate.anatomy import lines as anatomy_lines
from qmigrate.service import parse_service, workload_figures
from qmigrate.service import summary_line as service_line

PING_REPLY = re.compile(
    r"^\[(?P<at>[0-9.]+)\] [0-9]+ bytes from [^:]+: icmp_seq=(?P<seq>[0-9]+) "
    r"ttl=[0-9]+ time=(?P<rtt>[0-9.]+) ms"
)
PING_TOTALS = re.compile(r"(?P<sent>[0-9]+) packets transmitted, (?P<received>[0-9]+) received")
COUNTER_FIELDS = ("rx_bytes", "rx_packets", "tx_bytes", "tx_packets")

# How far around the switchover the guest-observed downtime is looked for, in seconds.
DOWNTIME_MARGIN_BEFORE = 0.5
DOWNTIME_MARGIN_AFTER = 3.0
# The probes must go on this long after the migration to judge the TCP stream.
COVER_AFTER = 1.0
# A stream whose last this-many seconds carried nothing has stopped.
STALLED_TAIL = 1.0


# ---------------------------------------------------------------------------- parsing


def parse_ping(text: str, t0: float) -> dict[str, Any]:
    """ping -D output as replies [t, seq, rtt_ms]; t is when the request was sent
    (reply time minus round trip), in seconds since T0."""
    replies = []
    for line in text.splitlines():
        m = PING_REPLY.match(line.strip())
        if m:
            rtt = float(m["rtt"])
            sent = float(m["at"]) - rtt / 1000.0
            replies.append([round(sent - t0, 6), int(m["seq"]), rtt])
    totals = PING_TOTALS.search(text)
    replies.sort(key=lambda r: r[1])
    return {
        "replies": replies,
        "transmitted": int(totals["sent"]) if totals else None,
        "received": int(totals["received"]) if totals else len(replies),
    }


def parse_iperf(doc: dict[str, Any] | None, t0: float) -> dict[str, Any]:
    """One run of the probe program's iperf3 wrapper: intervals [start, end, bytes,
    bits_per_second, retransmits] in seconds since T0, and how the stream ended."""
    if not doc:
        return {"ran": False, "error": "no output from the iperf3 probe", "intervals": []}
    out = doc.get("output") or {}
    launched = float(doc.get("launched") or t0)
    intervals = []
    for item in out.get("intervals", []):
        s = item.get("sum", {})
        intervals.append(
            [
                round(launched + s.get("start", 0.0) - t0, 6),
                round(launched + s.get("end", 0.0) - t0, 6),
                int(s.get("bytes", 0)),
                float(s.get("bits_per_second", 0.0)),
                s.get("retransmits"),
            ]
        )
    end = out.get("end", {})
    sent = end.get("sum_sent", {})
    received = end.get("sum_received", {})
    test = out.get("start", {}).get("test_start", {})
    return {
        "ran": True,
        "rc": doc.get("rc"),
        "error": out.get("error") or (doc.get("stderr") or None if doc.get("rc") else None),
        "launched": round(launched - t0, 6),
        "planned_seconds": test.get("duration"),
        "connections": len(out.get("start", {}).get("connected", [])),
        "intervals": intervals,
        "sent_bytes": sent.get("bytes"),
        "sent_seconds": sent.get("seconds"),
        "received_bytes": received.get("bytes"),
        "received_bps": received.get("bits_per_second"),
        "retransmits": sent.get("retransmits"),
    }


def parse_counters(doc: dict[str, Any] | None, t0: float) -> dict[str, list[list[float]]]:
    """Counter samples as {interface: [[t, rx_bytes, rx_packets, tx_bytes, tx_packets]]}."""
    series: dict[str, list[list[float]]] = {}
    for sample in (doc or {}).get("samples", []):
        for name, values in sample.get("c", {}).items():
            if values is not None:
                series.setdefault(name, []).append([round(sample["t"] - t0, 6), *values])
    return series


def parse_capture(doc: dict[str, Any], t0: float) -> dict[str, Any]:
    """A hypervisor's capture (runs of frames of each kind, each direction) with times in
    seconds since T0."""
    out = {k: v for k, v in doc.items() if k not in ("in", "out")}
    for direction in ("in", "out"):
        side = doc.get(direction) or {}
        out[direction] = {
            "frames": side.get("frames", 0),
            "runs": {
                kind: [[round(a - t0, 6), round(b - t0, 6), n] for a, b, n in runs]
                for kind, runs in (side.get("runs") or {}).items()
            },
        }
    return out


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return json.loads(text) if text.strip() else None


def ingest(run_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """The profile of RECORD from the raw probe output in RUN_DIR/probe."""
    probe = run_dir / "probe"
    window = _read_json(probe / "window.json")
    if window is None:
        raise ValueError(f"{probe}/window.json is missing: the probes did not run")
    opened = float(window["window_opened"])
    base = float(record.get("migrate_started_epoch") or opened)
    series: dict[str, Any] = {"counters": {}}
    raws = [
        (job, _read_json(probe / f"{job['name']}-{job['host']}.json"))
        for job in window.get("jobs", [])
    ]
    # Each host's clock against the source's, as its probes measured it: its times are
    # corrected by that offset, so every series is on the source's clock.
    clocks = {
        job["host"]: raw["clock"]
        for job, raw in raws
        if isinstance(raw, dict) and isinstance(raw.get("clock"), dict)
    }
    series["clocks"] = clocks
    for job, raw in raws:
        name, host = job["name"], job["host"]
        # The migrate command's time on this host's clock
        t0 = base + float((clocks.get(host) or {}).get("offset") or 0.0)
        if name == "client":
            raw = raw or {}
            if raw.get("ping") is not None or float(window["ping_interval"]) > 0:
                ping = raw.get("ping") or {}
                series["ping"] = parse_ping(ping.get("output") or "", t0)
                series["ping"]["host"] = host
                if ping.get("launched"):
                    series["ping"]["planned_end"] = round(
                        float(ping["launched"]) + float(window["duration"]) - t0, 6
                    )
                if not ping.get("output"):
                    series["ping"]["error"] = ping.get("stderr") or "no output from ping"
            if raw.get("tcp") is not None or float(window["tcp_interval"]) > 0:
                series["tcp"] = parse_iperf(raw.get("tcp"), t0)
                series["tcp"]["host"] = host
        elif name == "service":
            series["service"] = parse_service(raw, t0, window.get("workload"))
            series["service"]["host"] = host
        elif name == "counters":
            series["counters"][host] = parse_counters(raw, t0)
            raw = raw or {}
            if raw.get("capture") is not None:
                series.setdefault("captures", {})[host] = parse_capture(raw["capture"], t0)
            if raw.get("qemu_events") is not None:
                found = raw["qemu_events"]
                series["destination_events"] = {
                    "host": host,
                    "error": found.get("error"),
                    "events": [
                        {**e, "t": round(float(e["t"]) - t0, 6)} for e in found.get("events", [])
                    ],
                }
    link = window.get("link")
    link_out = (link or {}).get("output") or {}
    return {
        "t0_epoch": base,
        "window": {
            "opened": round(opened - base, 6),
            "closes": round(opened + float(window["duration"]) - base, 6),
            "lead": window["lead"],
            "duration": window["duration"],
            "source": window["source"],
            "destination": window["destination"],
            "client": window["client"],
            "target": window["target"],
            "interfaces": window["interfaces"],
            "tcp_interval": window["tcp_interval"],
            "ping_interval": window["ping_interval"],
            "counter_interval": window["counter_interval"],
        },
        "link": {
            "measured": link is not None,
            "bps": (link_out.get("end", {}).get("sum_received", {}).get("bits_per_second")),
            "seconds": (link_out.get("end", {}).get("sum_received", {}).get("seconds")),
            "error": link_out.get("error") if link is not None else None,
        },
        "series": series,
    }


# ---------------------------------------------------------------------------- phases


def phases(record: dict[str, Any]) -> dict[str, Any]:
    """When the migration's phases began and ended, in seconds since the migrate
    command, from QEMU's events (QMP) or, failing those, its timeline and statistics."""
    qemu = record.get("qemu") or {}
    events = record.get("events") or []
    timeline = record.get("timeline") or []

    def first(predicate) -> float | None:
        return next((e["t"] for e in events if predicate(e)), None)

    def status_event(status: str) -> float | None:
        return first(lambda e: e["event"] == "MIGRATION" and e["data"].get("status") == status)

    def status_point(status: str) -> float | None:
        return next((p["t"] for p in timeline if p.get("status") == status), None)

    total = qemu.get("total_time_ms")
    end = status_event("completed") or status_event("failed") or status_event("cancelled")
    if end is None:
        end = total / 1000.0 if total is not None else status_point(qemu.get("status") or "")
    active = status_event("active") or status_point("active")
    postcopy = status_event("postcopy-active") or status_point("postcopy-active")
    stop = first(lambda e: e["event"] == "STOP")
    downtime = qemu.get("downtime_ms")
    if postcopy is None and record.get("postcopy_at") is not None:
        postcopy = record["postcopy_at"]
    if stop is None and postcopy is not None:
        # Post-copy stops the source when it switches over, not at the end.
        stop = postcopy
    elif stop is None and end is not None and downtime is not None:
        stop = end - downtime / 1000.0
    resumed = stop + downtime / 1000.0 if stop is not None and downtime is not None else None
    passes = [e["t"] for e in events if e["event"] == "MIGRATION_PASS"]
    return {
        "start": 0.0,
        "active": active,
        "switchover": stop,
        "resumed": resumed,
        "postcopy": postcopy,
        "end": end,
        "passes": passes,
        "status": record.get("status") or qemu.get("status"),
    }


def phase_spans(p: dict[str, Any]) -> list[tuple[str, float, float]]:
    """Named spans (label, start, end) for shading: setup, pre-copy, stop-and-copy,
    post-copy, as far as they are known."""
    spans = []
    end = p.get("end")
    if end is None:
        return spans
    active = p.get("active") if p.get("active") is not None else 0.0
    spans.append(("setup", 0.0, active))
    stop = p.get("switchover")
    post = p.get("postcopy")
    precopy_end = min(x for x in (stop, post, end) if x is not None)
    spans.append(("pre-copy", active, precopy_end))
    if stop is not None:
        spans.append(("stop-and-copy", stop, p.get("resumed") or end))
    if post is not None:
        spans.append(("post-copy", post, end))
    return [s for s in spans if s[2] > s[1]]


# ---------------------------------------------------------------------------- figures


def _throughput(intervals: list[list[Any]], lo: float, hi: float, *, overlap: bool) -> float | None:
    """Mean bits per second of the intervals inside [LO, HI] (or overlapping it)."""
    chosen = [
        i
        for i in intervals
        if ((i[1] > lo and i[0] < hi) if overlap else (i[0] >= lo and i[1] <= hi))
    ]
    seconds = sum(i[1] - i[0] for i in chosen)
    if seconds <= 0:
        return None
    return sum(i[2] for i in chosen) * 8 / seconds


def tcp_figures(tcp: dict[str, Any] | None, p: dict[str, Any], window: dict) -> dict[str, Any]:
    if not tcp:
        return {"measured": False}
    if not tcp.get("ran"):
        # The stream was asked for and left nothing: say so rather than pass in silence.
        return {
            "measured": True,
            "survived": False,
            "why_not": [tcp.get("error") or "the TCP probe left no output"],
        }
    intervals = tcp["intervals"]
    start, end = p["start"], p.get("end")
    stream_end = intervals[-1][1] if intervals else None
    planned = tcp.get("planned_seconds") or window.get("duration")
    planned_end = tcp.get("launched", 0.0) + float(planned or 0)
    if end is not None and planned and planned_end < end + COVER_AFTER:
        # The window closed before the migration was over: nothing to say about survival.
        return {
            "measured": True,
            "survived": None,
            "why_not": [
                f"not measured: the stream was to end at t={planned_end:.1f} s, before the "
                f"migration ended at t={end:.1f} s (+{COVER_AFTER:g} s); raise probe_duration"
            ],
            "before_bps": _throughput(intervals, -1e9, start, overlap=False),
            "stream_end": stream_end,
        }
    reasons = []
    if tcp.get("rc") not in (0, None):
        reasons.append(f"iperf3 exited with status {tcp.get('rc')}")
    if tcp.get("error"):
        reasons.append(f"iperf3: {tcp['error']}")
    if tcp.get("connections") != 1:
        reasons.append(f"{tcp.get('connections')} data connections (1 expected)")
    ran_for = tcp.get("sent_seconds") or 0.0
    if planned and ran_for < float(planned) - 2 * float(window.get("tcp_interval", 0.1)):
        reasons.append(f"the stream ran {ran_for:.1f} s of the planned {planned} s")
    after = [i for i in intervals if end is not None and i[0] >= end]
    if end is not None and not after:
        reasons.append("no stream intervals after the migration ended")
    elif after and after[-1][2] == 0:
        # iperf3 writes in large blocks, so a single 100 ms report may carry nothing; a
        # stream that ends with a second or more of nothing has stopped.
        busy = [n for n, i in enumerate(intervals) if i[2] > 0]
        zero_from = intervals[busy[-1] + 1][0] if busy else intervals[0][0]
        if intervals[-1][1] - zero_from >= STALLED_TAIL:
            reasons.append(f"the stream carried no data from t={zero_from:.1f} s to its end")
    stall = None
    if end is not None:
        around = [i for i in intervals if i[1] > start and i[0] < end + 2.0]
        zero = [i for i in around if i[2] == 0]
        stall = round(sum(i[1] - i[0] for i in zero), 3) if around else None
    dip = min(
        (i[3] for i in intervals if end is not None and i[1] > start and i[0] < end + 1.0),
        default=None,
    )
    return {
        "measured": True,
        "survived": not reasons,
        "why_not": reasons,
        "before_bps": _throughput(intervals, -1e9, start, overlap=False),
        "during_bps": _throughput(intervals, start, end, overlap=True) if end is not None else None,
        "after_bps": _throughput(intervals, end, 1e9, overlap=False) if end is not None else None,
        "lowest_interval_bps": dip,
        "stalled_seconds": stall,
        "retransmits": tcp.get("retransmits"),
        "stream_end": stream_end,
    }


def ping_figures(ping: dict[str, Any] | None, p: dict[str, Any], interval: float) -> dict:
    """Guest-observed downtime around the migration: the longest time the client had a ping
    waiting and received no reply, less the usual round trip; the longest gap between two
    answered pings' send times (a client that stalls itself makes one too); and the pings
    lost there."""
    if not ping:
        return {"measured": False}
    replies = ping["replies"]
    transmitted = ping.get("transmitted")
    lost = transmitted - ping["received"] if transmitted is not None else None
    out: dict[str, Any] = {
        "measured": True,
        "transmitted": transmitted,
        "received": ping["received"],
        "lost": lost,
        "rtt_median_ms": _median([r[2] for r in replies]),
        "rtt_max_ms": max((r[2] for r in replies), default=None),
        "gap_ms": None,
        "gap_from": None,
        "silence_ms": None,
        "silence_from": None,
        "lost_around_migration": None,
        "guest_downtime_ms": None,
        "answered_after_migration": None,
    }
    end = p.get("end")
    if ping.get("error"):
        out["error"] = ping["error"]
    if end is None or not replies:
        return out
    planned_end = ping.get("planned_end")
    if planned_end is not None and planned_end < end + COVER_AFTER:
        out["error"] = (
            f"not measured: the pings were to end at t={planned_end:.1f} s, before the "
            f"migration ended at t={end:.1f} s (+{COVER_AFTER:g} s)"
        )
        return out
    # Sought around the switchover (the guest runs on during pre-copy), with ping's actual
    # pace, which falls behind its interval under load.
    lo, hi = switchover_window(p)
    steps = [b[0] - a[0] for a, b in pairwise(replies) if b[1] == a[1] + 1]
    pace = max(interval, _median(steps) or interval)
    out["pace_ms"] = round(pace * 1000, 3)
    best = None
    for a, b in pairwise(replies):
        if b[0] >= lo and a[0] <= hi:
            gap = b[0] - a[0]
            if best is None or gap > best[0]:
                best = (gap, a, b)
    out["answered_after_migration"] = any(r[0] > end for r in replies)
    if not out["answered_after_migration"]:
        # The guest never answered again: no gap closed, so no downtime to speak of.
        out["lost_around_migration"] = (transmitted or replies[-1][1]) - max(
            (r[1] for r in replies if r[0] <= end), default=0
        )
        return out
    if best is not None:
        gap, a, b = best
        out["gap_ms"] = round(gap * 1000, 3)
        out["gap_from"] = a[0]
    inside = [r[1] for r in replies if lo <= r[0] <= hi]
    if inside:
        out["lost_around_migration"] = max(inside) - min(inside) + 1 - len(inside)
    silence = ping_silence(replies, lo, hi)
    if silence is not None:
        out["silence_ms"] = round(silence[0] * 1000, 3)
        out["silence_from"] = round(silence[1], 6)
        usual = out["rtt_median_ms"] or 0.0
        out["guest_downtime_ms"] = round(max(0.0, silence[0] * 1000 - usual), 3)
    return out


def switchover_window(p: dict[str, Any]) -> tuple[float, float]:
    """Where the guest-observed downtime is sought, (lo, hi) in seconds: from a little
    before the switchover (not into the setup phase, whose own stall, QEMU setting up dirty
    tracking, the anatomy measures apart) to a few seconds after the guest resumed. P's
    end must be known."""
    switchover = p.get("switchover")
    lo = (switchover if switchover is not None else p["start"]) - DOWNTIME_MARGIN_BEFORE
    lo = max(lo, p.get("active") or lo)
    hi = (p.get("resumed") or p["end"]) + DOWNTIME_MARGIN_AFTER
    return lo, hi


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _delta(samples: list[list[float]] | None, field: str, lo: float, hi: float) -> int | None:
    """Growth of a counter from the last sample at or before LO to the first at or
    after HI."""
    if not samples:
        return None
    col = 1 + COUNTER_FIELDS.index(field)
    before = [s for s in samples if s[0] <= lo]
    after = [s for s in samples if s[0] >= hi]
    if not before or not after:
        return None
    return int(after[0][col] - before[-1][col])


def wire_figures(profile: dict[str, Any], p: dict[str, Any], qemu: dict) -> dict[str, Any]:
    """Bytes the migration put on the wire, from the hypervisors' NIC counters: what the
    source's NIC sent (less what its guest sent through the TAP) and what the
    destination's NIC received (less what it passed on to its guest)."""
    end = p.get("end")
    window = profile["window"]
    counters = profile["series"].get("counters", {})
    nic, taps = window["interfaces"][0], window["interfaces"][1:]
    out: dict[str, Any] = {"nic": nic, "source_bytes": None, "destination_bytes": None}
    if end is None:
        return out
    same_host = window["source"] == window["destination"]

    def net(host: str, nic_field: str, tap_field: str) -> int | None:
        series = counters.get(host, {})
        total = _delta(series.get(nic), nic_field, 0.0, end)
        if total is None:
            return None
        for tap in taps:
            moved = _delta(series.get(tap), tap_field, 0.0, end)
            total -= moved or 0
        return total

    if not same_host:
        out["source_bytes"] = net(window["source"], "tx_bytes", "rx_bytes")
        out["destination_bytes"] = net(window["destination"], "rx_bytes", "tx_bytes")
    transferred = qemu.get("transferred_bytes")
    measured = out["source_bytes"]
    out["qemu_transferred_bytes"] = transferred
    out["wire_to_qemu_ratio"] = (
        round(measured / transferred, 4) if measured is not None and transferred else None
    )
    out["same_host"] = same_host
    return out


def derive(record: dict[str, Any]) -> dict[str, Any]:
    """Every derived figure of a profiled RECORD, from the record alone."""
    profile = record["profile"]
    p = phases(record)
    qemu = record.get("qemu") or {}
    window = profile["window"]
    series = profile["series"]
    end = p.get("end")
    link_bps = profile.get("link", {}).get("bps")
    mig_bps = None
    if qemu.get("transferred_bytes") and qemu.get("total_time_ms"):
        mig_bps = qemu["transferred_bytes"] * 8 / (qemu["total_time_ms"] / 1000.0)
    qemu_bps = qemu.get("throughput_mbps") * 1e6 if qemu.get("throughput_mbps") else None
    ping = ping_figures(series.get("ping"), p, float(window["ping_interval"]))
    anatomy_figures = anatomy(record, p, ping)
    return {
        "phases": p,
        "window_covers_migration": (
            end is not None and window["opened"] <= 0.0 and window["closes"] >= end + 1.0
        ),
        "downtime": {
            "qemu_ms": qemu.get("downtime_ms"),
            "guest_observed_ms": ping.get("guest_downtime_ms"),
        },
        "tcp": tcp_figures(series.get("tcp"), p, window),
        "ping": ping,
        "wire": wire_figures(profile, p, qemu),
        "link": link_figures(window, link_bps, mig_bps, qemu_bps),
        "anatomy": anatomy_figures,
        "service": workload_figures(
            series.get("service"),
            end,
            switchover_window(p) if end is not None else None,
            phase_spans(p),
            ping.get("silence_ms"),
            p.get("switchover"),
            anatomy_figures.get("marks"),
            destination_runs(record, "out", ("tcp-from-guest",)),
        ),
    }


def link_figures(
    window: dict[str, Any], link_bps: float | None, mig_bps: float | None, qemu_bps: float | None
) -> dict[str, Any]:
    """Migration throughput against the link between the two hypervisors; a same-host
    migration crosses no link, so it has no capacity to compare with."""
    if window.get("source") == window.get("destination"):
        return {
            "capacity_bps": None,
            "migration_average_bps": mig_bps,
            "qemu_throughput_bps": qemu_bps,
            "fraction_of_link": None,
            "why_not": "source and destination are one host: the migration crossed no link",
        }
    return {
        "capacity_bps": link_bps,
        "migration_average_bps": mig_bps,
        "qemu_throughput_bps": qemu_bps,
        "fraction_of_link": round(mig_bps / link_bps, 4) if mig_bps and link_bps else None,
    }


def verification(derived: dict[str, Any]) -> dict[str, Any]:
    """The profile's named checks, added to the record's verification."""
    tcp = derived["tcp"]
    return {"tcp_stream_survived": tcp["survived"] if tcp.get("measured") else None}


# ---------------------------------------------------------------------------- summary


def _rate(bps: float | None) -> str:
    return "-" if bps is None else f"{bps / 1e6:.1f} Mbit/s"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def summary(derived: dict[str, Any]) -> list[str]:
    tcp, ping, link = derived["tcp"], derived["ping"], derived["link"]
    lost = "-" if ping.get("lost_around_migration") is None else ping["lost_around_migration"]
    if ping.get("error"):
        guest = f"guest-observed: {ping['error']}"
    elif ping.get("answered_after_migration") is False:
        guest = f"the guest did NOT answer pings after the migration ({lost} lost)"
    else:
        guest = f"guest-observed {_ms(derived['downtime']['guest_observed_ms'])}"
        guest += f" ({lost} pings lost around the switchover)"
    lines = [f"downtime: QEMU {_ms(derived['downtime']['qemu_ms'])}, {guest}"]
    if tcp.get("measured"):
        lines.append(
            "TCP stream {}: {} before, {} during, {} after".format(
                "survived"
                if tcp["survived"]
                else "not judged (" + "; ".join(tcp["why_not"]) + ")"
                if tcp["survived"] is None
                else "did NOT survive (" + "; ".join(tcp["why_not"]) + ")",
                _rate(tcp.get("before_bps")),
                _rate(tcp.get("during_bps")),
                _rate(tcp.get("after_bps")),
            )
        )
    fraction = link.get("fraction_of_link")
    if link.get("why_not"):
        lines.append(f"migration {_rate(link.get('migration_average_bps'))} ({link['why_not']})")
    else:
        lines.append(
            "link {}, migration {} ({})".format(
                _rate(link.get("capacity_bps")),
                _rate(link.get("migration_average_bps")),
                "-" if fraction is None else f"{fraction:.0%} of the link",
            )
        )
    if "anatomy" in derived:
        lines.extend(anatomy_lines(derived["anatomy"]))
    served = service_line(derived.get("service") or {})
    if served:
        lines.append(served)
    if derived["phases"].get("end") is None:
        lines.append("no migration in the probe window")
    elif not derived["window_covers_migration"]:
        lines.append("the probe window did not cover the migration and a second after it")
    return lines


# ---------------------------------------------------------------------------- program


# An array of numbers, strings, booleans and nulls as json.dumps(indent=2) lays it out,
# one element a line.
_FLAT_ARRAY = re.compile(r'\[\n\s*((?:"(?:[^"\\]|\\.)*"|[^\[\]{}"])*?)\n\s*\]')
_LINE_BREAK = re.compile(r"\n\s*")


def dump_record(record: dict[str, Any]) -> str:
    """RECORD as run.json's text: indented, keys sorted, but each array of plain values
    on one line (a series' samples are such arrays: tens of thousands of a service's
    requests would otherwise take seven lines each). JSON strings hold no line breaks, so
    only the layout changes."""
    text = json.dumps(record, indent=2, sort_keys=True)
    return _FLAT_ARRAY.sub(lambda m: "[" + _LINE_BREAK.sub(" ", m[1]) + "]", text) + "\n"


def profile_run(run_dir: Path, *, draw: bool = True) -> dict[str, Any]:
    """Ingest RUN_DIR's probes (when its record has no profile yet, or probe/ is newer),
    derive the figures, update run.json and draw the report. Returns what it found."""
    path = run_dir / "run.json"
    record = json.loads(path.read_text()) if path.exists() else {"run_id": run_dir.name}
    if (run_dir / "probe" / "window.json").exists():
        record["profile"] = ingest(run_dir, record)
    if "profile" not in record:
        raise ValueError(f"{path} has no profile and {run_dir}/probe holds no probe output")
    derived = derive(record)
    record["profile"]["derived"] = derived
    checks = verification(derived)
    record.setdefault("verification", {}).update(checks)
    path.write_text(dump_record(record))
    report = None
    if draw:
        from qmigrate.report import write_report

        report = str(write_report(record, run_dir, derived))
    return {
        "run_json": str(path),
        "report": report,
        "derived": derived,
        "verification": checks,
        "summary": summary(derived),
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m qmigrate.profile RUN_DIR", file=sys.stderr)
        return 2
    try:
        found = profile_run(Path(args[0]))
    except (OSError, ValueError, KeyError) as exc:
        print(f"qmigrate.profile: {exc}", file=sys.stderr)
        return 1
    json.dump(found, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
