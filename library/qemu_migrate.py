#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: qemu_migrate
short_description: Live-migrate a QEMU VM through its monitor socket, and verify it
description:
  - Drives one side of a QEMU live migration through the VM's monitor socket, QMP or
    HMP (the protocol is detected, so a VM started by hand with only the seed's
    C(-monitor unix:...) socket works too). Run it on the destination host with
    O(state=incoming), then on the source host with O(state=completed).
  - O(state=incoming) sets the capabilities and parameters on a destination started with
    C(-incoming defer) and tells it where to listen (C(migrate-incoming)).
  - O(state=completed) checks every capability and parameter against what this QEMU
    supports before anything starts, sets them, starts the migration and waits for a
    final state, recording a progress timeline (status, transferred, remaining,
    throughput, dirty-sync count) every O(poll_interval) seconds, and at once when QEMU
    sends an event over QMP (a status change, a pass), and the QMP events with their
    times; so the module returns as soon as the migration completes, not at the next
    point. With O(postcopy_after_passes) it switches to postcopy after that many
    dirty-sync passes.
  - A migration that fails, or does not finish within O(timeout) seconds, or whose
    monitor fails while it is followed, or whose controller goes away (Ctrl-C or a signal
    to C(ansible-playbook), which closes this module's connection; or a signal to the
    module) is stopped and fails the task with the cause, the statistics and the timeline.
  - Never two live copies of the guest. A migration is cancelled only before postcopy;
    after the cancel QEMU is asked again how it ended (it may complete first, and then
    the guest runs on the destination and the task reports C(completed) with a warning).
    Only a source whose migration failed or was cancelled is resumed (QEMU does it; the
    module checks, and sends C(cont) only to a C(paused) source); a C(postmigrate) source
    never is. A migration that fails, times out or pauses (C(postcopy-paused)) in postcopy
    fails at once saying that the guest is on the destination, and the source is left as
    it is.
  - A source that has already migrated (status postmigrate, migration completed) is
    reported with C(changed=false); a postmigrate source whose last migration did not
    complete is refused (its guest went elsewhere before).
  - O(state=incoming) accepts a destination that already listens only when it listens on
    O(uri) (C(query-migrate)'s socket addresses); one listening elsewhere, or already
    receiving, is refused.
  - Values of O(capabilities) are read as booleans strictly (C("off") is false; C("maybe")
    is refused), and values of O(parameters) are given the type this QEMU reports for
    them, so C("4000000") from C(-e key=value) becomes a number.
  - O(state=postcopy) switches a running migration to postcopy on demand;
    O(state=cancelled) cancels a running migration.
version_added: "0.1.0"
author: qmigrate developers
options:
  socket:
    description: The VM's monitor socket on this host (QMP or HMP).
    type: path
    required: true
  state:
    description: What this side should reach.
    type: str
    choices: [incoming, completed, postcopy, cancelled]
    default: completed
  uri:
    description:
      - The migration URI, the same on both sides, such as C(tcp:10.10.1.2:4444)
        (the destination listens on it) or C(unix:/path).
      - Required with O(state=incoming) and O(state=completed).
    type: str
  capabilities:
    description:
      - Migration capabilities to set, name to true/false (C(query-migrate-capabilities)
        lists them). Set the same ones on both sides.
      - Over QMP the C(events) capability is always turned on, for the timeline.
    type: dict
    default: {}
  parameters:
    description:
      - Migration parameters to set, such as C(max-bandwidth) (bytes/s), C(downtime-limit)
        (ms) or C(multifd-channels) (C(query-migrate-parameters) lists them).
    type: dict
    default: {}
  wait:
    description: With O(state=completed), wait for a final state; false returns once started.
    type: bool
    default: true
  timeout:
    description: Seconds the migration may take before it is cancelled and the task fails.
    type: float
    default: 600
  poll_interval:
    description: Seconds between two points of the progress timeline, at most (over QMP
      a point is also taken at each event).
    type: float
    default: 0.1
  postcopy_after_passes:
    description:
      - Switch to postcopy once this many dirty-sync passes are done. Needs the
        C(postcopy-ram) capability on both sides.
    type: int
  monitor_timeout:
    description: Seconds to wait for the monitor to connect and to answer each command.
    type: float
    default: 10
  tls:
    description:
      - Encrypt the migration stream with TLS (QEMU's C(tls-creds-x509)).
      - C(dir) is this host's directory of credentials, PEM files named as QEMU reads them
        (C(ca-cert.pem); C(server-cert.pem) and C(server-key.pem) for the destination,
        C(client-cert.pem) and C(client-key.pem) for the source), checked before anything
        changes. The object (C(qmigrate-tls-server) or C(qmigrate-tls-client)) is created
        again from them on each run, and the C(tls-creds) parameter set to it.
      - C(hostname) (source only) is the name the destination's certificate must carry,
        QEMU's C(tls-hostname); empty, the address of O(uri).
      - C(verify_peer) (destination only, default true) asks the source for its client
        certificate too.
    type: dict
  peer:
    description:
      - With O(state=completed), the destination QEMU as its O(state=incoming) run (or the
        qemu_vm module that told it to listen) returned it in RV(qemu), with C(version),
        C(machine) and C(machine_types).
      - A source whose machine type differs from the destination's is refused before
        anything changes (QEMU migrates only between VMs of one machine type, and two
        QEMU versions give C(pc) different ones), naming the newest type both know.
    type: dict
  allow_running:
    description:
      - With O(state=incoming), report a destination whose VM already runs (the guest
        arrived there in an earlier run) with C(changed=false) and RV(vm_status)
        C(running), instead of failing. The caller then tells the source so with
        O(expect_migrated).
    type: bool
    default: false
  expect_migrated:
    description:
      - With O(state=completed), the destination already runs the guest, so this source
        must have migrated; if it has not, fail at once (two VMs would run the guest)
        instead of starting a migration nobody listens for.
    type: bool
    default: false
  serial_log:
    description:
      - With O(state=completed), the VM's serial console log on this host; the last 64 KiB
        of it are returned as RV(serial_tail) once the migration has completed (the
        guest's last words here), sparing a second module run to read them.
    type: path
  baseline:
    description:
      - The capabilities and parameters this VM started with, as the qemu_vm module kept
        them (its O(baseline)). QEMU keeps what a migration set for the next one; given
        this file, each capability or parameter not asked for now that an earlier
        migration changed is put back as the VM started (a VM that received the guest
        with multifd would otherwise send it back with multifd to a destination without
        it, which fails). A missing file (a VM started otherwise) puts nothing back.
    type: path
  interrupt_record:
    description:
      - With O(state=completed), a file on this host where the module leaves its result
        (as JSON, with C(interrupted=true)) when its controller has gone away while it
        followed the migration, so that what it did (cancelled, or the migration
        completed) is not lost with the connection.
    type: path
notes:
  - Supports check mode, which validates against the running QEMU and predicts.
"""

EXAMPLES = r"""
- name: Let the destination listen
  qemu_migrate:
    socket: /run/qmigrate/labdst/vm0/qmp.sock
    state: incoming
    uri: tcp:10.10.1.2:4444
  delegate_to: labdst

- name: Migrate from the source, unthrottled, and record the timeline
  qemu_migrate:
    socket: /run/qmigrate/labsrc/vm0/qmp.sock
    uri: tcp:10.10.1.2:4444
    parameters:
      max-bandwidth: 0
      downtime-limit: 300
  register: migration

- name: Postcopy after two passes (postcopy-ram on both sides)
  qemu_migrate:
    socket: /run/qmigrate/labsrc/vm0/qmp.sock
    uri: tcp:10.10.1.2:4444
    capabilities: {postcopy-ram: true}
    postcopy_after_passes: 2
"""

RETURN = r"""
status:
  description: The migration's status at the end (completed, failed, cancelled, active, ...).
  returned: always
  type: str
  sample: completed
vm_status:
  description: This VM's run state at the end (postmigrate on a migrated source).
  returned: always
  type: str
  sample: postmigrate
protocol:
  description: The monitor protocol used, qmp or hmp.
  returned: always
  type: str
  sample: qmp
stats:
  description: Final statistics (times in ms, sizes in bytes, throughput in Mbit/s).
  returned: with state=completed
  type: dict
  sample: {total_time_ms: 5230, downtime_ms: 41, transferred_bytes: 32000000}
timeline:
  description: Progress points, t in seconds since the migrate command.
  returned: with state=completed
  type: list
  elements: dict
  sample: [{t: 0.1, status: active, transferred: 1048576, remaining: 200000000}]
events:
  description: QMP events received (MIGRATION, MIGRATION_PASS, ...), t as in timeline.
  returned: with state=completed
  type: list
  elements: dict
started:
  description: Wall-clock time (epoch seconds) of the migrate command, the timeline's zero.
  returned: with state=completed
  type: float
capabilities:
  description: The migration capabilities in force on this side afterwards.
  returned: always
  type: dict
parameters:
  description: The migration parameters in force on this side afterwards.
  returned: always
  type: dict
postcopy_at:
  description: t at which the migration was switched to postcopy, if it was.
  returned: with state=completed
  type: float
listening:
  description: The URI the destination listens on.
  returned: with state=incoming
  type: str
  sample: tcp:10.10.1.2:4444
interrupted:
  description: Whether the migration was stopped because the controller went away.
  returned: when a followed migration was stopped
  type: bool
qemu:
  description:
    - This side's QEMU, C(version), C(package) (the distribution's build) and the VM's
      machine type (C(machine)), empty where the monitor cannot tell; with
      O(state=incoming), also the C(machine_types) it knows (for O(peer)).
  returned: always
  type: dict
  sample: {version: 7.2.22, package: "Debian 1:7.2+dfsg-7+deb12u18+b3", machine: pc-i440fx-7.2}
serial_tail:
  description: The last 64 KiB of O(serial_log) after the migration completed.
  returned: with O(serial_log), when the migration completed (now or before)
  type: str
"""

import contextlib
import json
import os
import re
import select
import signal
import sys
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.guest import SERIAL_TAIL, read_tail
from ansible.module_utils.migration import (
    FINAL_STATES,
    POSTCOPY_STATES,
    RUNNING_STATES,
    MigrationError,
    QMPError,
    checked_settings,
    connect,
    listening_uris,
    machine_mismatch,
    migrated_account,
    read_baseline,
    sample,
    strict_bool,
    summary,
    tls_parameters,
)

# Run states a migration may start from: a guest that runs, or one its user paused. A
# postmigrate source has already handed its guest to some destination, and migrating
# that stale state again would make a second copy of the guest.
MIGRATABLE = ("running", "paused")
# How long QEMU gets to settle a cancel (cancelling -> cancelled) and resume the source.
SETTLE_SECONDS = 10


def event_point(event: dict, start: float) -> dict:
    """A QMP event on the timeline, at the time QEMU stamped it (else when it was read)."""
    stamp = event.get("timestamp") or {}
    if "seconds" in stamp:
        at = stamp["seconds"] + stamp.get("microseconds", 0) / 1e6
    else:
        at = event.get("received", time.time())
    return {"t": round(at - start, 4), "event": event.get("event"), "data": event.get("data", {})}


class Lifeline:
    """Whether whoever started this module still waits for its result.

    Ansible reads a module's result from its stdout: when the controller is interrupted
    (Ctrl-C, SIGINT or SIGTERM to ansible-playbook, an ansible-runner cancel), its SSH
    session closes, and so does the read end of that pipe, which poll() reports as an
    error on the write end. A signal sent to the module itself counts too.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)

    def __init__(self) -> None:
        self.signalled: str | None = None
        self.poll = select.poll()
        with contextlib.suppress(ValueError, OSError):
            self.poll.register(sys.stdout.fileno(), select.POLLERR | select.POLLHUP)
        for sig in self.SIGNALS:
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.signalled = signal.Signals(signum).name

    def lost(self) -> str | None:
        """Why the result has nobody to go to, or None while somebody waits for it."""
        if self.signalled:
            return f"the module got {self.signalled}"
        with contextlib.suppress(OSError):
            for _fd, flags in self.poll.poll(0):
                if flags & (select.POLLERR | select.POLLHUP):
                    return "the controller went away (its connection to this host closed)"
        return None


class Aborted(Exception):
    """The migration being followed must stop: REASON says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Migration:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.p = module.params
        self.mon = None
        self.result: dict = {}
        self.lifeline = Lifeline()

    # -- helpers -------------------------------------------------------------
    def fail(self, msg: str, **extra) -> None:
        self.module.fail_json(msg=msg, **self.result, **extra)

    def where(self) -> str:
        return self.p["socket"]

    def connect(self) -> None:
        try:
            self.mon = connect(self.p["socket"], self.p["monitor_timeout"])
        except QMPError as exc:
            self.fail(f"cannot reach the monitor of the VM at {self.where()}: {exc}")
        self.result["protocol"] = self.mon.protocol

    def reconnect(self) -> None:
        """A fresh monitor connection, after one that failed (a QMP timeout may leave a
        late reply behind; HMP closes the connection on a timeout)."""
        with contextlib.suppress(QMPError, OSError):
            self.mon.close()
        self.mon = connect(self.p["socket"], self.p["monitor_timeout"])

    def validate(self) -> tuple[dict, dict]:
        """The capabilities and parameters to set, checked against this QEMU and given
        the types it reports (an extra var given as -e key=value is a string)."""
        try:
            caps, params, supported = checked_settings(
                self.mon,
                self.p["capabilities"],
                self.p["parameters"],
                read_baseline(self.p["baseline"]),
            )
        except ValueError as exc:
            self.fail(str(exc))
        tls = self.p["tls"]
        if tls:
            try:
                params.update(
                    tls_parameters(self.endpoint(), tls["dir"], tls.get("hostname") or "")
                )
            except (KeyError, TypeError):
                self.fail("tls: give the directory of this host's credentials as tls.dir")
            except ValueError as exc:
                self.fail(f"{exc} (on the side at {self.where()})")
        if self.p["postcopy_after_passes"] is not None and not (
            caps.get("postcopy-ram") or supported.get("postcopy-ram")
        ):
            self.fail("postcopy_after_passes needs the postcopy-ram capability on both sides")
        return caps, params

    def endpoint(self) -> str:
        """This side's part in a TLS migration: the destination listens as the server."""
        return "server" if self.p["state"] == "incoming" else "client"

    def apply(self, caps: dict, params: dict) -> None:
        tls = self.p["tls"]
        if tls:
            try:
                verify = strict_bool(tls.get("verify_peer", True), "tls.verify_peer")
                self.mon.load_tls(self.endpoint(), tls["dir"], verify)
            except (QMPError, ValueError) as exc:
                self.fail(
                    f"the TLS credentials in {tls['dir']} do not load in QEMU at "
                    f"{self.where()}: {exc}"
                )
        try:
            self.mon.set_capabilities(caps)
            self.mon.set_parameters(params)
        except QMPError as exc:
            self.fail(f"setting migration capabilities/parameters on {self.where()} failed: {exc}")

    def settle(self, completed: bool = False) -> None:
        if "qemu" not in self.result:
            incoming = self.p["state"] == "incoming"
            self.result["qemu"] = self.mon.identity(machine_types=incoming)
        self.result["capabilities"] = self.mon.capabilities()
        self.result["parameters"] = self.mon.parameters()
        status = self.mon.status()
        # QEMU 10.0 reports a migration completed a moment before its main loop takes the
        # source from finish-migrate to postmigrate: ask again, briefly.
        for _ in range(40):
            if not completed or status != "finish-migrate":
                break
            time.sleep(0.05)
            status = self.mon.status()
        self.result["vm_status"] = status

    # -- destination ---------------------------------------------------------
    def incoming(self) -> None:
        status = self.mon.status()
        if status == "running" and self.p["allow_running"]:
            self.settle()
            self.module.exit_json(changed=False, status="running", **self.result)
        if status != "inmigrate":
            self.fail(
                f"the destination VM at {self.where()} is {status}, not waiting for a "
                "migration (inmigrate): start it with -incoming defer"
            )
        info = self.mon.query()
        if info.get("status") not in (None, "none", "setup"):
            self.fail(
                f"the destination VM at {self.where()} is already receiving a migration "
                f"(status {info['status']}): start a fresh destination"
            )
        listening = listening_uris(info)
        if listening and self.p["uri"] not in listening:
            self.fail(
                f"the destination VM at {self.where()} already listens on "
                f"{', '.join(listening)}, not on {self.p['uri']}, and QEMU listens only once: "
                "start a fresh destination (launch.yml replaces one an earlier run told to listen)"
            )
        caps, params = self.validate()
        changed = not listening
        if not self.module.check_mode:
            self.apply(caps, params)
            if not listening:
                try:
                    self.mon.incoming(self.p["uri"])
                except QMPError as exc:
                    self.fail(
                        f"the destination at {self.where()} refused to listen on "
                        f"{self.p['uri']}: {exc}"
                    )
        self.settle()
        self.result["status"] = "incoming"
        self.module.exit_json(changed=changed, listening=self.p["uri"], **self.result)

    # -- source --------------------------------------------------------------
    def completed(self) -> None:
        before = self.mon.query()
        if before.get("status") == "cancelling":
            # An earlier migration winds down (multifd's channels wait for their sockets,
            # which a cut link holds): it is not one to follow, and QEMU starts no other
            # until it has ended.
            before = self.wait_final()
            if before.get("status") == "cancelling":
                self.settle()
                self.fail(
                    f"an earlier migration from {self.where()} is still being cancelled "
                    f"after {SETTLE_SECONDS} s (status cancelling; its connection may be "
                    "cut): try again once it has ended"
                )
        vm_before = self.mon.status()
        account = migrated_account(self.mon, before) if vm_before == "postmigrate" else None
        if account:
            self.result.update(account)
            self.read_serial_tail()
            self.module.exit_json(**self.result)
        if self.p["expect_migrated"]:
            self.settle()
            self.fail(
                f"the destination already runs the guest, but the source at {self.where()} "
                f"has not migrated (it is {vm_before}, its last migration "
                f"{before.get('status', 'none')}): two VMs would run one guest; stop one"
            )
        if vm_before == "inmigrate":
            self.fail(
                f"the VM at {self.where()} is waiting as a migration destination "
                "(inmigrate); run state=completed on the source"
            )
        if before.get("status") in POSTCOPY_STATES:
            self.settle()
            self.fail(
                f"a postcopy migration from {self.where()} is {before['status']}: the "
                "guest went to its destination (and is lost if that QEMU died); the source "
                "holds only part of it and is left as it is. Stop both VMs "
                "(playbooks/teardown.yml) to start over"
            )
        running = before.get("status") in RUNNING_STATES
        if not running and "migration" in self.mon.yank_instances():
            # QEMU refuses a new migration until the last one's cleanup has run ("duplicate
            # yank instance"), and 7.2 then leaves its state at setup. The cleanup never
            # comes when the migration thread hangs: on 7.2, after a multifd migration
            # whose destination died (it waits for a channel that is gone).
            self.settle()
            self.fail(
                f"QEMU at {self.where()} cannot start another migration: its last one "
                f"({before.get('status', 'none')}) never finished tearing down (its yank "
                "instance is still registered, as QEMU 7.2 leaves it when a multifd "
                "migration's destination dies). The source VM runs on, but only a restart "
                "lets it migrate again (playbooks/teardown.yml, then migrate.yml)"
            )
        if not running and vm_before not in MIGRATABLE:
            self.settle()
            self.fail(
                f"the source VM at {self.where()} is {vm_before}, not running: "
                + (
                    "its guest has already been migrated away (last migration: "
                    f"{before.get('status', 'none')}), and migrating it again would copy "
                    "stale state"
                    if vm_before == "postmigrate"
                    else "there is no guest to migrate"
                )
            )
        if not running and self.p["peer"]:
            mine = self.mon.identity(machine_types=True)
            # what settle reports, without asking QEMU again
            self.result["qemu"] = {k: v for k, v in mine.items() if k != "machine_types"}
            mismatch = machine_mismatch(mine, self.p["peer"], self.where())
            if mismatch:
                self.settle()
                self.fail(mismatch)
        if not running:
            caps, params = self.validate()
            if self.module.check_mode:
                self.settle()
                self.module.exit_json(changed=True, status="none", **self.result)
            self.apply(caps, params)
        elif self.module.check_mode:
            self.settle()
            self.module.exit_json(changed=True, status=before["status"], **self.result)

        start = time.time()
        if not running:
            try:
                self.mon.migrate(self.p["uri"])
            except QMPError as exc:
                self.result["stats"] = summary(self.mon.query())
                self.resume(vm_before, postcopy=False)
                self.settle()
                self.fail(
                    f"migrate to {self.p['uri']} was refused by {self.where()}: {exc}; "
                    f"the source VM is {self.result['vm_status']}"
                )
        self.result["started"] = start
        if not self.p["wait"]:
            self.settle()
            self.module.exit_json(
                changed=True, status=self.mon.query().get("status"), **self.result
            )
        self.follow(start, vm_before)

    def settled_stats(self, stats: dict) -> dict:
        """QEMU 7.2 reports "completed" a moment before it has stored the total time and
        the downtime (both read 0 until then): ask again, briefly, until they are in."""
        for _ in range(40):
            if stats.get("status") != "completed" or stats.get("total-time"):
                break
            time.sleep(0.05)
            stats = self.mon.query()
        return stats

    def follow(self, start: float, vm_before: str) -> None:
        """Follow the migration to a final state, recording its timeline; stop it (see
        abort) on a timeout, a monitor error, or an interruption."""
        timeline: list[dict] = []
        events: list[dict] = []
        postcopy_at = None
        deadline = time.monotonic() + self.p["timeout"]
        stats: dict = {}

        def keep(final: dict) -> None:
            self.result.update(
                timeline=timeline, events=events, stats=summary(final), postcopy_at=postcopy_at
            )

        try:
            while True:
                try:
                    stats = self.mon.query()
                    point = sample(stats, start)
                    timeline.append(point)
                    events.extend(event_point(ev, start) for ev in self.mon.events())
                    if stats.get("status") in FINAL_STATES:
                        stats = self.settled_stats(stats)
                        break
                    passes = self.p["postcopy_after_passes"]
                    if (
                        passes is not None
                        and postcopy_at is None
                        and stats.get("status") == "active"
                        and (point["dirty_sync_count"] or 0) >= passes
                    ):
                        self.mon.start_postcopy()
                        postcopy_at = point["t"]
                except QMPError as exc:
                    reason = f"the monitor failed while following the migration: {exc}"
                    raise Aborted(reason) from exc
                if stats.get("status") == "postcopy-paused":
                    raise Aborted("the postcopy migration paused: its connection broke")
                lost = self.lifeline.lost()
                if lost:
                    raise Aborted(f"interrupted: {lost}")
                if time.monotonic() >= deadline:
                    raise Aborted(
                        "migration to {} did not finish within {:g} s (status {}{})".format(
                            self.p["uri"],
                            self.p["timeout"],
                            stats.get("status"),
                            stalled(timeline),
                        )
                    )
                try:
                    self.mon.pause(self.p["poll_interval"])
                except QMPError as exc:
                    reason = f"the monitor failed while following the migration: {exc}"
                    raise Aborted(reason) from exc
        except Aborted as stop:
            keep(stats)
            self.abort(stop.reason, vm_before, postcopy_at is not None or in_postcopy(timeline))
            return

        keep(stats)
        if stats["status"] != "completed":
            postcopy = postcopy_at is not None or in_postcopy(timeline)
            if postcopy:
                self.settle()
                self.fail(
                    "migration to {} {} after {:.1f} s, in postcopy: {}; the guest's state "
                    "was split between the two hosts, so the source ({}) is not resumed".format(
                        self.p["uri"],
                        stats["status"],
                        time.time() - start,
                        stats.get("error-desc", "no reason given"),
                        self.result.get("vm_status") or self.mon.status(),
                    ),
                    status=stats["status"],
                )
            self.resume(vm_before, postcopy=False)
            self.settle()
            self.fail(
                "migration to {} {} after {:.1f} s: {}{}; the source VM is {}".format(
                    self.p["uri"],
                    stats["status"],
                    time.time() - start,
                    stats.get("error-desc", "no reason given"),
                    self.tls_hint(stats.get("error-desc", "")),
                    self.result["vm_status"],
                ),
                status=stats["status"],
            )
        self.settle(completed=True)
        self.read_serial_tail()
        self.module.exit_json(changed=True, status="completed", **self.result)

    def tls_hint(self, error: str) -> str:
        """What a TLS migration that failed in its handshake needs, after QEMU's words."""
        tls = self.p["tls"]
        if not tls or not re.search(r"certificate|TLS|handshake|GnuTLS|issuer", error, re.I):
            return ""
        name = tls.get("hostname") or "the address in the URI"
        return (
            " (TLS: both hosts' certificates must come from one CA, the one in each "
            f"host's ca-cert.pem, and the destination's must name {name})"
        )

    def read_serial_tail(self) -> None:
        path = self.p["serial_log"]
        if not path:
            return
        try:
            self.result["serial_tail"] = read_tail(path, SERIAL_TAIL)
        except OSError as exc:
            self.module.warn(f"cannot read the serial log {path}: {exc}")

    def abort(self, reason: str, vm_before: str, postcopy: bool) -> None:
        """Stop a migration that must not go on, without ever leaving two live copies of
        the guest: a migration in postcopy is left alone (the destination runs the guest);
        any other is cancelled and QEMU asked again how it ended, since it may complete
        before the cancel lands; only a source whose migration failed or was cancelled is
        resumed."""
        try:
            if postcopy:
                self.settle()
                self.finish_aborted(
                    f"{reason}. It is in postcopy, so it is not cancelled: the guest runs on "
                    f"the destination ({self.p['uri']}), and the source "
                    f"({self.result['vm_status']}) holds only the RAM not yet sent; it must "
                    "not be resumed. If the destination QEMU still runs, recover the migration "
                    "with migrate-recover on it and migrate with resume on the source; if it "
                    "died, the guest is lost.",
                    status=self.result.get("stats", {}).get("status"),
                )
                return
            try:
                self.mon.cancel()
            except QMPError:
                self.reconnect()  # the connection may be what failed; cancel once more
                self.mon.cancel()
            final = self.settled_stats(self.wait_final())
            self.result["stats"] = summary(final)
            self.record_end(final)
            if final.get("status") == "completed":
                self.settle()
                warning = (
                    f"{reason}; the migration completed before it could be cancelled, so the "
                    "guest runs on the destination and the source stays postmigrate"
                )
                self.finish_aborted(warning, completed=True)
                return
            if final.get("status") in POSTCOPY_STATES:
                self.abort(reason, vm_before, postcopy=True)
                return
            if final.get("status") not in FINAL_STATES:
                self.settle()
                self.finish_aborted(
                    f"{reason}; it was cancelled but had not ended after {SETTLE_SECONDS} s "
                    f"(status {final.get('status')}); the source VM is "
                    f"{self.result['vm_status']} and was not resumed",
                    status=final.get("status"),
                )
                return
            self.resume(vm_before, postcopy=False)
            self.settle()
            self.finish_aborted(
                f"{reason}; it was cancelled and the source VM is {self.result['vm_status']}",
                status=final.get("status"),
            )
        except QMPError as exc:
            self.finish_aborted(
                f"{reason}; then the monitor at {self.where()} failed too ({exc}): where the "
                "migration stands is unknown, and the source VM was not resumed",
                status="unknown",
            )

    def record_end(self, final: dict) -> None:
        """The end of a stopped migration on its timeline and among its events (QEMU's
        MIGRATION cancelled, ...), so that a record says when it ended."""
        start = self.result.get("started")
        if start is None:
            return
        self.result.setdefault("timeline", []).append(sample(final, start))
        self.result.setdefault("events", []).extend(
            event_point(ev, start) for ev in self.mon.events()
        )

    def wait_final(self) -> dict:
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            info = self.mon.query()
            if info.get("status") in FINAL_STATES + POSTCOPY_STATES or time.monotonic() >= deadline:
                return info
            time.sleep(0.1)

    def finish_aborted(self, msg: str, completed: bool = False, status: str | None = None) -> None:
        """End the module after abort(): leave an account on this host when its
        controller has gone (nobody reads stdout any more), then report."""
        lost = self.lifeline.lost()
        account = dict(self.result, msg=msg, status="completed" if completed else status)
        if lost and self.p["interrupt_record"]:
            account.update(interrupted=True, recorded=time.time())
            path = self.p["interrupt_record"]
            with contextlib.suppress(OSError), open(path + ".tmp", "w") as f:
                json.dump(account, f)
            with contextlib.suppress(OSError):
                os.replace(path + ".tmp", path)
        if completed:
            self.module.warn(msg)
            self.module.exit_json(changed=True, status="completed", **self.result)
        self.fail(msg, status=status, interrupted=bool(lost))

    def resume(self, vm_before: str, postcopy: bool) -> None:
        """Leave a source whose migration failed or was cancelled running, as it was
        (QEMU restarts it itself; this makes sure). Asks QEMU first, and never resumes a
        source whose migration completed or reached postcopy, nor one that is postmigrate:
        its guest then lives on the destination."""
        if vm_before != "running" or postcopy:
            return
        deadline = time.monotonic() + self.p["monitor_timeout"]
        while time.monotonic() < deadline:
            if self.mon.query().get("status") not in ("failed", "cancelled", None, "none"):
                return
            status = self.mon.status()
            if status == "running":
                return
            if status == "paused":
                self.mon.cont()
                return
            time.sleep(0.1)

    # -- on demand -----------------------------------------------------------
    def postcopy(self) -> None:
        status = self.mon.query().get("status")
        if status == "postcopy-active" or status == "completed":
            self.settle()
            self.module.exit_json(changed=False, status=status, **self.result)
        if status != "active":
            self.fail(f"no migration to switch to postcopy at {self.where()} (status {status})")
        if not self.mon.capabilities().get("postcopy-ram"):
            self.fail("the running migration was started without the postcopy-ram capability")
        if not self.module.check_mode:
            self.mon.start_postcopy()
        self.settle()
        self.module.exit_json(changed=True, status=self.mon.query().get("status"), **self.result)

    def cancelled(self) -> None:
        status = self.mon.query().get("status")
        if status not in RUNNING_STATES:
            self.settle()
            self.module.exit_json(changed=False, status=status, **self.result)
        if status in POSTCOPY_STATES:
            self.settle()
            self.fail(
                f"the migration at {self.where()} is {status}: in postcopy the guest runs on "
                "the destination, and cancelling would lose it"
            )
        if not self.module.check_mode:
            self.mon.cancel()
            final = self.wait_final()
            if final.get("status") != "completed":
                self.resume("running", postcopy=False)
        self.settle()
        self.module.exit_json(changed=True, status=self.mon.query().get("status"), **self.result)

    def run(self) -> None:
        self.connect()
        try:
            getattr(self, self.p["state"])()
        except (QMPError, MigrationError) as exc:
            self.fail(f"monitor {self.where()}: {exc}")
        finally:
            with contextlib.suppress(QMPError, OSError):
                self.mon.close()


def in_postcopy(timeline: list[dict]) -> bool:
    return any(point.get("status") in POSTCOPY_STATES for point in timeline)


def stalled(timeline: list[dict], window: float = 5.0) -> str:
    """', no data sent for the last N s' when the transferred bytes stopped moving (a cut
    link looks like that), else ''."""
    if not timeline or timeline[-1].get("transferred") is None:
        return ""
    last = timeline[-1]
    still = last["t"]
    for point in reversed(timeline):
        if point.get("transferred") != last["transferred"]:
            break
        still = point["t"]
    quiet = last["t"] - still
    return f", no data sent for the last {quiet:.0f} s" if quiet >= window else ""


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            socket=dict(type="path", required=True),
            state=dict(
                type="str",
                default="completed",
                choices=["incoming", "completed", "postcopy", "cancelled"],
            ),
            uri=dict(type="str"),
            capabilities=dict(type="dict", default={}),
            parameters=dict(type="dict", default={}),
            wait=dict(type="bool", default=True),
            timeout=dict(type="float", default=600),
            poll_interval=dict(type="float", default=0.1),
            postcopy_after_passes=dict(type="int"),
            monitor_timeout=dict(type="float", default=10),
            interrupt_record=dict(type="path"),
            baseline=dict(type="path"),
            allow_running=dict(type="bool", default=False),
            peer=dict(type="dict"),
            tls=dict(type="dict"),
            expect_migrated=dict(type="bool", default=False),
            serial_log=dict(type="path"),
        ),
        required_if=[("state", "incoming", ["uri"]), ("state", "completed", ["uri"])],
        supports_check_mode=True,
    )
    for option in ("timeout", "poll_interval", "monitor_timeout"):
        value = module.params[option]
        if not 0 < value < float("inf"):
            module.fail_json(msg=f"{option}: {value} must be a positive, finite number of seconds")
    passes = module.params["postcopy_after_passes"]
    if passes is not None and passes < 1:
        module.fail_json(msg=f"postcopy_after_passes: {passes} must be at least 1")
    # A controller that went away no longer reads the result: its account is in
    # interrupt_record.
    with contextlib.suppress(BrokenPipeError):
        Migration(module).run()


if __name__ == "__main__":
    main()
