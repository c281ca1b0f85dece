"""A profiled run's report: results/<run-id>/report.md and its PNG plots, drawn from
run.json alone (``qmigrate report RUN --draw`` draws them again)."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

from qmigrate.anatomy import ANNOUNCE_KINDS, CLIENT_KINDS, GUEST_KINDS, MARKS, lost_send_times
from qmigrate.profile import COUNTER_FIELDS, derive, phase_spans, summary

PHASE_COLOURS = {
    "setup": "#d9d9d9",
    "pre-copy": "#9ecae1",
    "stop-and-copy": "#fb6a4a",
    "post-copy": "#fdae6b",
}
PLOTS = ("connection.png", "wire.png", "ram.png", "anatomy.png", "service.png")
# The anatomy figure's lanes: (host role, direction, kinds, label).
LANES = (
    ("source", "out", (*GUEST_KINDS, *ANNOUNCE_KINDS), "source NIC: from the guest"),
    ("source", "in", CLIENT_KINDS, "source NIC: to the guest"),
    ("destination", "out", ANNOUNCE_KINDS, "destination NIC: announcements"),
    ("destination", "out", GUEST_KINDS, "destination NIC: from the guest"),
    ("destination", "in", CLIENT_KINDS, "destination NIC: to the guest"),
)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _shade(ax, spans: list[tuple[str, float, float]], passes: list[float], labels: bool) -> None:
    for name, lo, hi in spans:
        # A phase of a few milliseconds still shows as a visible band.
        width = max(hi - lo, 0.01)
        ax.axvspan(
            lo,
            lo + width,
            color=PHASE_COLOURS[name],
            alpha=0.6,
            lw=0,
            label=name if labels else None,
        )
    for n, at in enumerate(passes):
        ax.axvline(
            at,
            color="#6a51a3",
            lw=0.8,
            ls=":",
            label="dirty-sync pass" if labels and not n else None,
        )


def _rates(samples: list[list[float]], field: str) -> tuple[list[float], list[float]]:
    """Mbit/s between consecutive counter samples, at the interval's midpoint."""
    col = 1 + COUNTER_FIELDS.index(field)
    xs, ys = [], []
    for a, b in pairwise(samples):
        dt = b[0] - a[0]
        if dt > 0:
            xs.append((a[0] + b[0]) / 2)
            ys.append((b[col] - a[col]) * 8 / dt / 1e6)
    return xs, ys


def plot_connection(record: dict[str, Any], derived: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    series = record["profile"]["series"]
    spans = phase_spans(derived["phases"])
    passes = derived["phases"]["passes"]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(11, 6.5), layout="constrained")
    tcp = series.get("tcp") or {}
    if tcp.get("intervals"):
        xs = [i[0] for i in tcp["intervals"]] + [tcp["intervals"][-1][1]]
        ys = [i[3] / 1e6 for i in tcp["intervals"]]
        ys.append(ys[-1])
        top.step(xs, ys, where="post", color="#08519c", lw=1.2, label="iperf3 TCP to the guest")
    _shade(top, spans, passes, labels=True)
    top.set_ylabel("TCP throughput (Mbit/s)")
    top.set_ylim(bottom=0)
    verdict = derived["tcp"]
    title = "TCP stream " + _verdict(verdict)
    top.set_title(f"{record.get('run_id', '')}\n{title}", fontsize=10)
    top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)

    ping = series.get("ping") or {}
    replies = ping.get("replies", [])
    if replies:
        bottom.plot(
            [r[0] for r in replies],
            [r[2] for r in replies],
            ".",
            ms=2,
            color="#238b45",
            label="ping RTT (answered)",
        )
        lost = lost_send_times(replies)
        if lost:
            bottom.plot(
                lost, [0] * len(lost), "x", ms=4, color="#cb181d", label="ping lost (when sent)"
            )
    _shade(bottom, spans, passes, labels=False)
    bottom.set_ylabel("ping round trip (ms)")
    bottom.set_ylim(bottom=0)
    bottom.set_xlabel("time since the migrate command (s)")
    bottom.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_wire(record: dict[str, Any], derived: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    window = record["profile"]["window"]
    counters = record["profile"]["series"].get("counters", {})
    nic, taps = window["interfaces"][0], window["interfaces"][1:]
    fig, ax = plt.subplots(figsize=(11, 4.5), layout="constrained")
    lines = [
        (window["source"], nic, "tx_bytes", f"{window['source']} {nic} sent"),
        (window["destination"], nic, "rx_bytes", f"{window['destination']} {nic} received"),
    ]
    for tap in taps:
        lines.append((window["source"], tap, "tx_bytes", f"{window['source']} {tap} to guest"))
        lines.append(
            (window["destination"], tap, "tx_bytes", f"{window['destination']} {tap} to guest")
        )
    seen = set()
    for host, iface, field, label in lines:
        samples = counters.get(host, {}).get(iface)
        if not samples or (host, iface, field) in seen:
            continue
        seen.add((host, iface, field))
        xs, ys = _rates(samples, field)
        ax.plot(xs, ys, lw=1.1, label=label)
    _shade(ax, phase_spans(derived["phases"]), derived["phases"]["passes"], labels=True)
    ax.set_xlim(window["opened"] - 0.5, window["closes"] + 0.5)
    ax.set_ylabel("rate on the wire (Mbit/s)")
    ax.set_xlabel("time since the migrate command (s)")
    ax.set_ylim(bottom=0)
    ax.set_title("Bytes on the wire (interface counters)", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_ram(record: dict[str, Any], derived: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    timeline = [p for p in record.get("timeline") or [] if p.get("remaining") is not None]
    fig, ax = plt.subplots(figsize=(11, 4.5), layout="constrained")
    if timeline:
        xs = [p["t"] for p in timeline]
        ax.plot(xs, [p["remaining"] / 2**20 for p in timeline], "o-", ms=3, label="remaining RAM")
        ax.plot(
            xs,
            [(p["transferred"] or 0) / 2**20 for p in timeline],
            "s--",
            ms=3,
            label="transferred",
        )
    _shade(ax, phase_spans(derived["phases"]), derived["phases"]["passes"], labels=True)
    end = derived["phases"].get("end")
    if end:
        ax.set_xlim(-0.05 * end, end * 1.1)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("MiB")
    ax.set_xlabel("time since the migrate command (s)")
    ax.set_title("QEMU's progress (query-migrate)", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_anatomy(record: dict[str, Any], derived: dict[str, Any], path: Path) -> bool:
    """The setup phase and the switchover up close: ping round trips and TCP throughput
    over the frames each hypervisor's NIC saw, with the anatomy's marks. False (and no
    file) when the run has no marks."""
    a = derived.get("anatomy") or {}
    marks = {k: v for k, v in (a.get("marks") or {}).items() if v is not None}
    if not marks:
        path.unlink(missing_ok=True)
        return False
    plt = _pyplot()
    series = record["profile"]["series"]
    window = record["profile"]["window"]
    captures = series.get("captures") or {}
    active = derived["phases"].get("active") or 0.0
    stop = marks.get("source_stopped", active)
    last = max(marks.values())
    views = [("setup phase", -0.1, active + 0.1), ("switchover", stop - 0.08, last + 0.08)]
    fig, axes = plt.subplots(
        2, 2, figsize=(13, 6.5), layout="constrained", height_ratios=[3, 2], sharex="col"
    )
    replies = (series.get("ping") or {}).get("replies") or []
    tcp = (series.get("tcp") or {}).get("intervals") or []
    spans = phase_spans(derived["phases"])
    colours = plt.get_cmap("tab10")
    for col, (title, lo, hi) in enumerate(views):
        top, lanes = axes[0][col], axes[1][col]
        shown = [r for r in replies if lo - 1 <= r[0] <= hi]
        top.plot(
            [r[0] for r in shown], [r[2] for r in shown], ".", ms=4, color="#238b45",
            label="ping RTT by send time",
        )  # fmt: skip
        top.set_yscale("log")
        top.set_ylabel("ping round trip (ms)")
        twin = top.twinx()
        if tcp:
            twin.step(
                [i[0] for i in tcp], [i[3] / 1e6 for i in tcp], where="post", color="#08519c",
                lw=1, alpha=0.6, label="TCP Mbit/s (100 ms)",
            )  # fmt: skip
        twin.set_ylim(bottom=0)
        twin.set_ylabel("TCP (Mbit/s)")
        top.set_title(title, fontsize=10)
        for row, (role, direction, kinds, _label) in enumerate(LANES):
            side = (captures.get(window[role]) or {}).get(direction) or {}
            bars = [
                (run[0], max(run[1] - run[0], 0.0004))
                for kind in kinds
                for run in (side.get("runs") or {}).get(kind, [])
                if run[1] >= lo and run[0] <= hi
            ]
            lanes.broken_barh(bars, (row - 0.35, 0.7), color=colours(row))
        lanes.set_yticks(range(len(LANES)), [lane[3] for lane in LANES], fontsize=7)
        lanes.set_ylim(-0.6, len(LANES) - 0.4)
        lanes.invert_yaxis()
        lanes.set_xlabel("time since the migrate command (s)")
        for ax in (top, lanes):
            _shade(ax, spans, [], labels=False)
            for n, (name, _what) in enumerate(MARKS):
                at = marks.get(name)
                if at is not None and lo <= at <= hi:
                    ax.axvline(
                        at, color=colours(n % 10), lw=1, ls="--",
                        label=name.replace("_", " ") if ax is top else None,
                    )  # fmt: skip
            ax.set_xlim(lo, hi)
        if col == 1:
            top.legend(loc="upper left", bbox_to_anchor=(1.18, 1.0), fontsize=7)
    fig.suptitle(f"{record.get('run_id', '')}: where the downtime goes", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_service(record: dict[str, Any], derived: dict[str, Any], path: Path) -> bool:
    """What the service under load saw: each request's latency (a point, log scale; those
    failed or timed out marked when sent) and the replies per 100 ms, the migration's phases
    shaded. False (and no file) when the run had no service under load."""
    requests = ((record["profile"]["series"].get("service") or {}).get("requests")) or []
    figures = derived.get("service") or {}
    if not requests:
        path.unlink(missing_ok=True)
        return False
    plt = _pyplot()
    spans = phase_spans(derived["phases"])
    passes = derived["phases"]["passes"]
    fig, (top, bottom) = plt.subplots(
        2, 1, sharex=True, figsize=(11, 6.5), layout="constrained", height_ratios=[3, 2]
    )
    answered = [r for r in requests if r[4] == "ok" and r[1] is not None]
    latencies = [max((r[1] - r[0]) * 1000, 1e-3) for r in answered]
    top.plot(
        [r[0] for r in answered],
        latencies,
        ".",
        ms=1.5,
        alpha=0.5,
        color="#08519c",
        rasterized=True,
        label="request latency (each request, when sent)",
    )
    top.set_yscale("log")
    unanswered = [r[0] for r in requests if r[4] != "ok" or r[1] is None]
    if unanswered:
        ceiling = max(latencies, default=1.0) * 1.5
        top.plot(
            unanswered,
            [ceiling] * len(unanswered),
            "x",
            ms=4,
            color="#cb181d",
            label="failed or timed out (when sent)",
        )
    if figures.get("delay_limit_ms"):
        top.axhline(
            figures["delay_limit_ms"],
            color="#636363",
            lw=0.8,
            ls="--",
            label="10x the p99 before the migration",
        )
    _shade(top, spans, passes, labels=True)
    top.set_ylabel("latency (ms, log)")
    top.set_title(
        f"{record.get('run_id', '')}\n{figures.get('service')} under load: "
        f"{figures.get('rate', 0):g} requests/s, mix {figures.get('mix')}, "
        f"{figures.get('keys')} keys",
        fontsize=10,
    )
    top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    bins = figures.get("throughput") or []
    if bins:
        xs = [b[0] for b in bins] + [bins[-1][0] + 0.1]
        ys = [b[1] for b in bins]
        ys.append(ys[-1])
        bottom.step(xs, ys, where="post", color="#238b45", lw=1.1, label="replies per 100 ms")
    if figures.get("rate"):
        bottom.axhline(figures["rate"], color="#636363", lw=0.8, ls="--", label="rate sent")
    _shade(bottom, spans, passes, labels=False)
    bottom.set_ylabel("throughput (requests/s)")
    bottom.set_ylim(bottom=0)
    bottom.set_xlabel("time since the migrate command (s)")
    bottom.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def service_markdown(f: dict[str, Any]) -> list[str]:
    """The section of report.md about the service under load; none without one."""
    if not f.get("measured"):
        return []
    out = [
        f"## The service under load ({f.get('service')})",
        "",
        f"An open-loop client sent {_num(f.get('rate'), '', 0)} requests a second (mix "
        f"{f.get('mix')}, {f.get('keys')} keys over {_num(f.get('records'))} records of "
        f"{_num(f.get('value_size'))} bytes, {_num(f.get('connections'))} connections) on a "
        "fixed schedule, whatever the replies did; each request's latency counts from when "
        "it was due.",
        "",
    ]
    if "periods" not in f:
        return [*out, f"Not measured: {f.get('error') or 'no requests'}.", ""]
    out += [
        "| requests | sent | answered | failed | timed out | p50 ms | p99 ms | p99.9 ms | max ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    label = {
        "before": "before (answered before the migrate command)",
        "during": "during (sent while it ran, or waiting when it began)",
        "after": "after",
    }
    for name in ("before", "during", "after"):
        p = f["periods"][name]
        out.append(
            f"| {label[name]} | {p['sent']} | {p['answered']} | {p['failed']} | "
            f"{p['timed_out']} | {_num(p['p50_ms'], '', 2)} | {_num(p['p99_ms'], '', 2)} | "
            f"{_num(p['p99.9_ms'], '', 2)} | {_num(p['max_ms'], '', 1)} |"
        )
    out += [
        "",
        f"- Longest time with requests waiting and no reply: "
        f"{_num(f.get('longest_silence_ms'), ' ms', 1)}, from t="
        f"{_num(f.get('longest_silence_from'), ' s', 3)} ({f.get('longest_silence_phase')}).",
        f"- At the switchover, the outage as the requests saw it (under way when the source "
        f"stopped the guest): {_num(f.get('outage_silence_ms'), ' ms', 1)} with no reply, from "
        f"t={_num(f.get('outage_silence_from'), ' s', 3)}; the pings' own (their silence under "
        "way at the stop) "
        f"{_num(f.get('ping_silence_ms'), ' ms', 1)} (difference "
        f"{_num(f.get('switchover_vs_ping_ms'), ' ms', 1)}). The longest silence begun around "
        f"the switchover: {_num(f.get('switchover_silence_ms'), ' ms', 1)} (longer when "
        "requests whose segments were lost in the outage waited out TCP's retransmission "
        "timer).",
        f"- On the wire: the outage ended {_num(f.get('outage_end_after_guest_tcp_ms'), ' ms', 1)}"
        " after the guest's last TCP frame on the destination's NIC before it (the reply "
        f"that ended it), {_num(f.get('outage_end_vs_tcp_ms'), ' ms', 1)} after the "
        "client's first TCP segment reached the destination (negative: the guest answered "
        "first, a request it held or a reply its own retransmission timer sent again); "
        f"that segment came {_num(f.get('tcp_waited_after_path_ms'), ' ms', 1)} after the "
        "path to the destination was back (the client's retransmission timer).",
        f"- Delayed past 10x the p99 before the migration "
        f"({_num(f.get('delay_limit_ms'), ' ms', 1)}), failed or timed out: "
        f"{_num(f.get('delayed'))} of the requests from the migrate command on, the last "
        f"sent at t={_num(f.get('last_delayed_at'), ' s', 3)}.",
        f"- Connections made again after an error: {_num(f.get('reconnects'))}, "
        f"{_num(f.get('reconnect_ms'), ' ms', 1)} without a connection in all.",
        f"- The client fell behind its schedule by at most "
        f"{_num(f.get('client_behind_max_ms'), ' ms', 1)} (its own delay, not the service's).",
    ]
    if f.get("error"):
        out.append(f"- The client said: {f['error']}.")
    return [*out, "", "![Request latency and throughput](service.png)", ""]


def anatomy_markdown(a: dict[str, Any]) -> list[str]:
    """The anatomy's section of report.md."""
    out = ["## Where the downtime goes", ""]
    if not a.get("marks"):
        return [*out, f"Not measured: {a.get('why_not', 'no marks')}.", ""]
    names = a.get("mark_names") or dict(MARKS)
    out += ["| mark | t (s) | what |", "|---|---|---|"]
    for name, _what in MARKS:
        at = a["marks"].get(name)
        out.append(f"| {name} | {'-' if at is None else f'{at:.4f}'} | {names.get(name, '')} |")
    out += ["", "| part | from | to | ms |", "|---|---|---|---|"]
    for part in a["parts"]:
        out.append(
            f"| {part['name']} | {part['from']} | {part['to']} | {_num(part['ms'], '', 1)} |"
        )
    check = a.get("sum_vs_guest") or {}
    resume = a.get("resume") or {}
    tcp = a.get("tcp") or {}
    setup = a.get("setup") or {}
    ping = setup.get("ping") or {}
    silent = setup.get("guest_silent") or {}
    out += [
        "",
        f"- Sum of the parts: {_num(a.get('sum_ms'), ' ms', 1)}; guest-observed downtime "
        f"{_num(a.get('guest_observed_ms'), ' ms', 1)} (difference "
        f"{_num(check.get('difference_ms'), ' ms', 1)}; the pings around the stop were "
        f"{_num(check.get('ping_interval_ms'), ' ms', 1)} apart, with the usual round trip).",
        f"- Source STOP to destination RESUME: {_num(resume.get('stop_to_resume_ms'), ' ms', 1)};"
        f" QEMU's downtime {_num(resume.get('qemu_downtime_ms'), ' ms')} (STOP to the source's"
        f" completion: {_num(resume.get('stop_to_completed_ms'), ' ms', 1)}): the guest ran"
        f" again {_num(resume.get('beyond_downtime_ms'), ' ms', 1)} after QEMU's downtime"
        " ended.",
        f"- TCP: moving again {_num(tcp.get('stalled_ms'), ' ms', 1)} after the stop, "
        f"{_num(tcp.get('waited_after_path_ms'), ' ms', 1)} after the path to the destination "
        f"was back; {tcp.get('segments_to_source_after_stop', 0)} of the client's segments "
        "went to the stopped source after the stop"
        + (
            f", the last {_num(tcp.get('retransmission_gap_ms'), ' ms', 1)} before the first "
            "that reached the destination."
            if tcp.get("retransmission_gap_ms") is not None
            else "."
        ),
    ]
    if setup.get("measured"):
        out.append(
            f"- Setup phase ({_num(setup.get('setup_ms'), ' ms')}): the guest answered no ping "
            f"for {_num(ping.get('unanswered_ms'), ' ms', 1)} (largest round trip "
            f"{_num(ping.get('rtt_max_ms'), ' ms', 1)}) and sent nothing from the source's NIC "
            f"for {_num(silent.get('ms'), ' ms', 1)}; before the migration, at most "
            f"{_num((setup.get('ping_baseline') or {}).get('unanswered_ms'), ' ms', 1)} and "
            f"{_num((setup.get('guest_silent_baseline') or {}).get('ms'), ' ms', 1)}."
        )
    clocks = a.get("clocks") or {}
    if clocks:
        out.append(
            "- Clocks against the source's: "
            + "; ".join(
                f"{host} {_num(c.get('offset') and c['offset'] * 1e3, ' ms', 3)}"
                f" +/- {_num(c.get('uncertainty') and c['uncertainty'] * 1e3, ' ms', 3)}"
                if c.get("offset") is not None
                else f"{host} not measured ({c.get('error')})"
                for host, c in sorted(clocks.items())
            )
            + "."
        )
    if a.get("missing"):
        out.append("- Marks missing: " + ", ".join(a["missing"]) + ".")
    if a.get("out_of_order"):
        out.append("- Out of order: " + "; ".join(a["out_of_order"]) + ".")
    return [*out, "", "![Where the downtime goes](anatomy.png)", ""]


def _verdict(tcp: dict[str, Any]) -> str:
    if not tcp.get("measured"):
        return "not measured"
    return {
        True: "survived the migration",
        False: "did NOT survive the migration",
        None: "not judged: the probes ended too soon",
    }[tcp.get("survived")]


def _row(name: str, value: Any) -> str:
    return f"| {name} | {value} |"


def _mbit(bps: float | None) -> str:
    return "-" if bps is None else f"{bps / 1e6:.1f} Mbit/s"


def _num(value: Any, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def markdown(record: dict[str, Any], derived: dict[str, Any]) -> str:
    qemu = record.get("qemu") or {}
    tcp, ping, wire, link = derived["tcp"], derived["ping"], derived["wire"], derived["link"]
    window = record["profile"]["window"]
    ph = derived["phases"]
    lines = [
        f"# Migration report: {record.get('run_id', '')}",
        "",
        (
            f"{record.get('vm', '?')}: {record.get('source', '?')} -> "
            f"{record.get('destination', '?')} over `{record.get('uri', '?')}`: "
            f"**{record.get('status', '?')}**"
            if "status" in record
            else f"Probes from {window['client']} to {window['target']} without a migration."
        ),
        "",
        *(f"- {line}" for line in summary(derived)),
        "",
        "## Downtime",
        "| | |",
        "|---|---|",
        _row("QEMU's downtime", _num(derived["downtime"]["qemu_ms"], " ms")),
        _row(
            "guest-observed (longest time a ping waited with no reply, less the median RTT)",
            _num(derived["downtime"]["guest_observed_ms"], " ms", 1),
        ),
        _row(
            "longest gap between answered pings' send times",
            _num(ping.get("gap_ms"), " ms", 1),
        ),
        _row("pings lost around the switchover", _num(ping.get("lost_around_migration"))),
        _row(
            "pings sent / answered",
            f"{_num(ping.get('transmitted'))} / {_num(ping.get('received'))}",
        ),
        _row("ping interval", f"{float(window['ping_interval']) * 1000:.0f} ms"),
        "",
        *anatomy_markdown(derived.get("anatomy") or {}),
        *service_markdown(derived.get("service") or {}),
        "## TCP stream (iperf3, client to guest)",
        "| | |",
        "|---|---|",
        _row(
            "survived",
            {True: "yes", False: "no", None: "not judged"}[tcp.get("survived")]
            if tcp.get("measured")
            else "not measured",
        ),
        *(_row("why not", reason) for reason in tcp.get("why_not", [])),
        _row("before the migration", _mbit(tcp.get("before_bps"))),
        _row("during", _mbit(tcp.get("during_bps"))),
        _row("after", _mbit(tcp.get("after_bps"))),
        _row("lowest 100 ms interval around it", _mbit(tcp.get("lowest_interval_bps"))),
        _row("time with no data around it", _num(tcp.get("stalled_seconds"), " s", 1)),
        _row("retransmits", _num(tcp.get("retransmits"))),
        "",
        "## Migration",
        "| | |",
        "|---|---|",
        _row("total time", _num(qemu.get("total_time_ms"), " ms")),
        _row("setup time", _num(qemu.get("setup_time_ms"), " ms")),
        _row("dirty-sync passes", _num(qemu.get("dirty_sync_count"))),
        _row("QEMU's transferred bytes", _num(qemu.get("transferred_bytes"))),
        _row(
            f"bytes on the wire ({wire.get('nic')}, source, less guest traffic)",
            _num(wire.get("source_bytes")),
        ),
        _row(
            f"bytes on the wire ({wire.get('nic')}, destination, less guest traffic)",
            _num(wire.get("destination_bytes")),
        ),
        _row("wire / QEMU", _num(wire.get("wire_to_qemu_ratio"), "", 3)),
        _row("link capacity (iperf3, source to destination)", _mbit(link.get("capacity_bps"))),
        _row(
            "migration average (transferred / total time)", _mbit(link.get("migration_average_bps"))
        ),
        _row("QEMU's last reported throughput", _mbit(link.get("qemu_throughput_bps"))),
        _row(
            "fraction of the link",
            "-" if link.get("fraction_of_link") is None else f"{link['fraction_of_link']:.0%}",
        ),
        "",
        "Phases (seconds since the migrate command): "
        + ", ".join(f"{name} {lo:.3f}-{hi:.3f}" for name, lo, hi in phase_spans(ph))
        + f"; probe window {window['opened']:.2f} to {window['closes']:.2f}.",
        "",
        "## Plots",
        "![TCP throughput and ping round trip](connection.png)",
        "",
        "![Bytes on the wire](wire.png)",
        "",
        "![QEMU's remaining RAM](ram.png)",
        "",
    ]
    return "\n".join(lines)


def write_report(
    record: dict[str, Any], run_dir: Path, derived: dict[str, Any] | None = None
) -> Path:
    """Draw run_dir/report.md and its plots from RECORD (a profiled run.json); DERIVED,
    when the caller has just computed it, saves computing it again."""
    derived = derived or derive(record)
    plot_connection(record, derived, run_dir / "connection.png")
    plot_wire(record, derived, run_dir / "wire.png")
    plot_ram(record, derived, run_dir / "ram.png")
    plot_anatomy(record, derived, run_dir / "anatomy.png")
    plot_service(record, derived, run_dir / "service.png")
    path = run_dir / "report.md"
    path.write_text(markdown(record, derived))
    return path
