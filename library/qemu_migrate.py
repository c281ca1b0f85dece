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
    throughput, dirty-sync count) every O(poll_interval) seconds and the QMP events with
    their times. With O(postcopy_after_passes) it switches to postcopy after that many
    dirty-sync passes.
  - A migration that fails, or does not finish within O(timeout) seconds (it is then
    cancelled), fails the task with the cause, the statistics and the timeline; QEMU
    resumes the source, and the module checks that it runs (or resumes it itself).
  - A source that has already migrated (status postmigrate, migration completed) is
    reported with C(changed=false).
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
    description: Seconds between two points of the progress timeline.
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
"""

import contextlib
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.migration import (
    FINAL_STATES,
    MigrationError,
    QMPError,
    connect,
    sample,
    summary,
)

RUNNING_STATES = (
    "setup",
    "active",
    "postcopy-active",
    "pre-switchover",
    "device",
    "wait-unplug",
    "postcopy-paused",
    "postcopy-recover",
    "cancelling",
)


def event_point(event: dict, start: float) -> dict:
    """A QMP event on the timeline, at the time QEMU stamped it (else when it was read)."""
    stamp = event.get("timestamp") or {}
    if "seconds" in stamp:
        at = stamp["seconds"] + stamp.get("microseconds", 0) / 1e6
    else:
        at = event.get("received", time.time())
    return {"t": round(at - start, 4), "event": event.get("event"), "data": event.get("data", {})}


class Migration:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.p = module.params
        self.mon = None
        self.result: dict = {}

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

    def wanted_capabilities(self) -> dict:
        caps = {k: bool(v) for k, v in self.p["capabilities"].items()}
        if self.mon.protocol == "qmp":
            caps.setdefault("events", True)
        return caps

    def validate(self) -> tuple[dict, dict]:
        """The capabilities and parameters to set, checked against this QEMU."""
        caps = self.wanted_capabilities()
        supported = self.mon.capabilities()
        self.refuse_unknown("capabilities", caps, supported)
        params = dict(self.p["parameters"])
        self.refuse_unknown("parameters", params, self.mon.parameters())
        if self.p["postcopy_after_passes"] is not None and not (
            caps.get("postcopy-ram") or supported.get("postcopy-ram")
        ):
            self.fail("postcopy_after_passes needs the postcopy-ram capability on both sides")
        return caps, params

    def refuse_unknown(self, option: str, wanted: dict, known: dict) -> None:
        unknown = sorted(set(wanted) - set(known))
        if unknown:
            self.fail(
                "{}: {} not supported by this QEMU ({}); it supports: {}".format(
                    option, ", ".join(unknown), self.where(), ", ".join(sorted(known))
                )
            )

    def apply(self, caps: dict, params: dict) -> None:
        try:
            self.mon.set_capabilities(caps)
            self.mon.set_parameters(params)
        except QMPError as exc:
            self.fail(f"setting migration capabilities/parameters on {self.where()} failed: {exc}")

    def settle(self) -> None:
        self.result["capabilities"] = self.mon.capabilities()
        self.result["parameters"] = self.mon.parameters()
        self.result["vm_status"] = self.mon.status()

    # -- destination ---------------------------------------------------------
    def incoming(self) -> None:
        status = self.mon.status()
        if status != "inmigrate":
            self.fail(
                f"the destination VM at {self.where()} is {status}, not waiting for a "
                "migration (inmigrate): start it with -incoming defer"
            )
        caps, params = self.validate()
        changed = True
        if not self.module.check_mode:
            self.apply(caps, params)
            try:
                self.mon.incoming(self.p["uri"])
            except QMPError as exc:
                if "already" not in str(exc):
                    self.fail(
                        f"the destination at {self.where()} refused to listen on "
                        f"{self.p['uri']}: {exc}"
                    )
                changed = False  # it already listens: a repeated call changes nothing
        self.settle()
        self.result["status"] = "incoming"
        self.module.exit_json(changed=changed, **self.result)

    # -- source --------------------------------------------------------------
    def completed(self) -> None:
        before = self.mon.query()
        vm_before = self.mon.status()
        if before.get("status") == "completed" and vm_before == "postmigrate":
            self.settle()
            self.module.exit_json(
                changed=False,
                status="completed",
                stats=summary(before),
                timeline=[],
                events=[],
                msg="the VM has already migrated",
                **self.result,
            )
        if vm_before == "inmigrate":
            self.fail(
                f"the VM at {self.where()} is waiting as a migration destination "
                "(inmigrate); run state=completed on the source"
            )
        running = before.get("status") in RUNNING_STATES
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
                self.resume(vm_before)
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
        timeline, events = [], []
        postcopy_at = None
        deadline = time.monotonic() + self.p["timeout"]
        stats: dict = {}
        while True:
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
            if time.monotonic() >= deadline:
                self.result.update(timeline=timeline, events=events, stats=summary(stats))
                self.cancel_and_resume(vm_before)
                self.fail(
                    "migration to {} did not finish within {:.0f} s (status {}); it was "
                    "cancelled and the source VM is {}".format(
                        self.p["uri"],
                        self.p["timeout"],
                        stats.get("status"),
                        self.result["vm_status"],
                    )
                )
            time.sleep(self.p["poll_interval"])

        self.result.update(
            timeline=timeline, events=events, stats=summary(stats), postcopy_at=postcopy_at
        )
        if stats["status"] != "completed":
            if postcopy_at is None:
                self.resume(vm_before)
            self.settle()
            self.fail(
                "migration to {} {} after {:.1f} s: {}; the source VM is {}".format(
                    self.p["uri"],
                    stats["status"],
                    time.time() - start,
                    stats.get("error-desc", "no reason given"),
                    self.result["vm_status"],
                ),
                status=stats["status"],
            )
        self.settle()
        self.module.exit_json(changed=True, status="completed", **self.result)

    def resume(self, vm_before: str) -> None:
        """Leave the source as it was before: QEMU resumes it itself; make sure."""
        deadline = time.monotonic() + self.p["monitor_timeout"]
        while vm_before == "running" and time.monotonic() < deadline:
            status = self.mon.status()
            if status == "running":
                return
            if status in ("paused", "postmigrate"):
                self.mon.cont()
                return
            time.sleep(0.1)

    def cancel_and_resume(self, vm_before: str) -> None:
        with contextlib.suppress(QMPError):  # it may have ended on its own meanwhile
            self.mon.cancel()
        deadline = time.monotonic() + self.p["monitor_timeout"]
        while self.mon.query().get("status") not in FINAL_STATES:
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        self.resume(vm_before)
        self.settle()

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
        if not self.module.check_mode:
            self.cancel_and_resume("running")
        self.settle()
        self.module.exit_json(changed=True, status=self.mon.query().get("status"), **self.result)

    def run(self) -> None:
        self.connect()
        try:
            getattr(self, self.p["state"])()
        except (QMPError, MigrationError) as exc:
            self.fail(f"monitor {self.where()}: {exc}")
        finally:
            self.mon.close()


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
        ),
        required_if=[("state", "incoming", ["uri"]), ("state", "completed", ["uri"])],
        supports_check_mode=True,
    )
    Migration(module).run()


if __name__ == "__main__":
    main()
