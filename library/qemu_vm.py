#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: qemu_vm
short_description: Start or stop a daemonized QEMU VM from its command line
description:
  - Starts QEMU with a given argv (which must daemonize and write a pidfile, as the
    C(qemu_argv) filter renders it) unless that same command line already runs, then
    waits for the QMP socket and reports the VM's run state (C(query-status)).
  - A VM that already runs with a different command line is left alone and the module
    fails, naming the options that differ, unless O(replace=true). C(-incoming) does not
    count, since a VM started as a destination is the same machine once its guest arrived.
  - A VM whose guest has migrated away (state postmigrate) is restarted when the argv
    asks for a destination (C(-incoming)), so a migration can go back the other way.
    So is a destination that is no longer fresh (still C(inmigrate), but an earlier run
    told it where to listen, or it is receiving a migration), since QEMU listens only
    once and a failed or interrupted run must not spoil the next one.
  - The pid in the pidfile is trusted only when that process is QEMU started with this
    very pidfile (its C(-pidfile) argument), so a stale pidfile can never make the module
    signal another process.
  - O(state=absent) stops the VM cleanly with QMP C(quit), then SIGTERM, then SIGKILL, each
    after a wait, always by the pid in the pidfile; then removes the pidfile and sockets.
  - O(state=query) only reads how the VM stands (its pid and run state) and, given O(argv),
    whether it runs as that command line asks, and if not why; it changes nothing, not
    even a stale pidfile, in check mode or not, unless asked to let a fresh destination
    listen (O(incoming)).
version_added: "0.1.0"
author: qmigrate developers
options:
  argv:
    description:
      - The QEMU command line. Required with O(state=running).
      - With O(state=query), the command line the VM is compared with (optional).
    type: list
    elements: str
  pidfile:
    description: QEMU's pidfile (C(-pidfile)).
    type: path
    required: true
  qmp:
    description: Path of the VM's QMP socket (C(-qmp unix:...)).
    type: path
    required: true
  sockets:
    description: Other socket paths of the VM, removed when it is stopped or found dead.
    type: list
    elements: path
    default: []
  state:
    description: Whether the VM should run, or C(query) to tell how it stands.
    type: str
    choices: [running, absent, query]
    default: running
  replace:
    description: Restart a VM that runs with a different command line.
    type: bool
    default: false
  timeout:
    description: Seconds to wait for the QMP socket after starting, and for each step of stopping.
    type: float
    default: 30
  incoming:
    description:
      - With O(state=query) and an O(argv) that starts a destination (C(-incoming)), when
        that VM runs as asked and waits for a migration, fresh (nothing has told it where
        to listen yet), set these migration capabilities and parameters on it and tell it
        to listen (C(migrate-incoming)), in the same module run, so that the migration
        can start at once. RV(listening) then says so.
      - With O(state=running) and such an O(argv), the destination it starts (or finds
        waiting fresh) is told the same way, so that a migration back and forth needs one
        module run on each new destination; there, a destination that will not listen,
        or that does not wait for a migration (its guest runs there), fails the task with
        the reason.
      - A destination that will not listen with these is left as it was, the reason in
        RV(incoming_error); it still counts as running as asked (the migration's own step
        then names what is wrong). Nothing is told in check mode.
    type: dict
    suboptions:
      uri:
        description: Where to listen, as C(migrate-incoming) takes it (C(tcp:HOST:PORT),
          C(unix:PATH)).
        type: str
        required: true
      capabilities:
        description: Migration capabilities to set (name to boolean).
        type: dict
        default: {}
      parameters:
        description: Migration parameters to set (name to value), given QEMU's own types.
        type: dict
        default: {}
      tls:
        description:
          - A TLS migration's destination, as qemu_migrate's O(tls) (C(dir), the host's
            credentials; C(verify_peer)); the server's C(tls-creds-x509) object is created
            from them and C(tls-creds) set to it.
        type: dict
  baseline:
    description:
      - Where to keep, as JSON, the migration capabilities and parameters the VM has when
        this module starts it (QEMU's own), so that a migration can put back what an
        earlier one changed (qemu_migrate's O(baseline)). Written when the VM is started.
    type: path
  serial_log:
    description:
      - With O(state=query), the VM's serial console log; given it, a VM running as asked
        whose guest has migrated (or arrived) also says so, so that a run with nothing
        to migrate needs no other module run to verify it.
      - A source VM whose guest has migrated away (postmigrate, its last migration
        completed) returns that migration's account (RV(migrated)), the figures and
        settings qemu_migrate returns for a VM that has already migrated, with the end of
        this log.
      - A destination VM (O(argv) with C(-incoming)) that runs the guest returns the
        guest's heartbeat there (RV(guest)), waited for as qemu_guest waits for it (the
        first heartbeat, then a later one), up to O(heartbeat_timeout) seconds each.
      - Read-only; done in check mode too.
    type: path
  heartbeat_timeout:
    description: With O(serial_log), seconds to wait for a heartbeat, and again for a later one.
    type: float
    default: 5
notes:
  - Supports check mode.
"""

EXAMPLES = r"""
- name: Start the source VM
  qemu_vm:
    argv: "{{ spec | qemu_argv }}"
    pidfile: /run/qmigrate/labsrc/vm0/qemu.pid
    qmp: /run/qmigrate/labsrc/vm0/qmp.sock

- name: Tell whether vm0 runs as it would be started
  qemu_vm:
    state: query
    argv: "{{ spec | qemu_argv }}"
    pidfile: /run/qmigrate/labsrc/vm0/qemu.pid
    qmp: /run/qmigrate/labsrc/vm0/qmp.sock
  register: vm0

- name: Tell how the destination stands and, fresh and as asked, let it listen
  qemu_vm:
    state: query
    argv: "{{ destination_spec | qemu_argv(true) }}"
    pidfile: /run/qmigrate/labdst/vm0/qemu.pid
    qmp: /run/qmigrate/labdst/vm0/qmp.sock
    incoming:
      uri: tcp:10.10.1.2:4444
      parameters: {max-bandwidth: 0, downtime-limit: 300}

- name: Stop it
  qemu_vm:
    state: absent
    pidfile: /run/qmigrate/labsrc/vm0/qemu.pid
    qmp: /run/qmigrate/labsrc/vm0/qmp.sock
"""

RETURN = r"""
pid:
  description: QEMU's pid, or null when it does not run.
  returned: always
  type: int
  sample: 4242
status:
  description:
    - The VM's run state from QMP query-status (running, inmigrate, postmigrate, ...).
    - Null when it does not run, and in check mode for a VM that would be started.
  returned: always
  type: str
  sample: running
started:
  description: Whether this call started QEMU.
  returned: always
  type: bool
stopped_by:
  description: How the VM was stopped (quit, SIGTERM, SIGKILL), when it was.
  returned: when stopped
  type: str
  sample: quit
as_asked:
  description:
    - With O(state=query) and O(argv), whether the VM runs as the command line asks (and,
      for a destination, is fresh), which O(state=running) would leave as it is.
  returned: with state=query and argv
  type: bool
  sample: false
why:
  description: With O(state=query) and O(argv), why the VM does not run as asked.
  returned: with state=query and argv, when as_asked is false
  type: str
  sample: "its guest has migrated away (postmigrate)"
listening:
  description:
    - With O(incoming), the URI, capabilities and parameters the destination was just told
      to listen with, as given.
  returned: when this call told the destination to listen
  type: dict
  sample: {uri: "tcp:10.10.1.2:4444", capabilities: {}, parameters: {max-bandwidth: 0}}
qemu:
  description:
    - With O(incoming), the destination's QEMU (C(version), C(package)), its machine type
      (C(machine)) and the C(machine_types) it knows, for qemu_migrate's O(peer).
  returned: when this call told the destination to listen
  type: dict
  sample: {version: 10.0.2, machine: pc-i440fx-7.2, machine_types: [pc-i440fx-7.2]}
incoming_error:
  description: With O(incoming), why a fresh destination running as asked did not listen.
  returned: when it was asked to listen and would not
  type: str
  sample: "it would not listen on tcp:10.10.1.2:4444: capabilities: x-foo not supported
    by this QEMU (/run/qmigrate/labdst/vm0/qmp.sock); it supports: ..."
migrated:
  description:
    - With O(serial_log), a source whose guest has migrated away, as qemu_migrate reports
      a VM that has already migrated (changed, status, msg, stats, timeline, events,
      protocol, capabilities, parameters, vm_status) and serial_tail, the end of its log.
  returned: with state=query and serial_log, for a VM as asked, postmigrate, its last
    migration completed
  type: dict
  sample: {status: completed, msg: the VM has already migrated, vm_status: postmigrate,
    stats: {total_time_ms: 712, downtime_ms: 31}, serial_tail: "qmigrate-heartbeat 812 ..."}
guest:
  description:
    - With O(serial_log), a destination running its guest, as qemu_guest reports it
      (vm_status, head, tail, first, latest, waited).
  returned: with state=query and serial_log, for a destination VM as asked and running
  type: dict
  sample: {vm_status: running, first: 813, latest: 2040, waited: 0.11, head: "...", tail: "..."}
replaced:
  description: Why a running VM was (or, in check mode, would be) restarted.
  returned: when a running VM is replaced
  type: str
  sample: "an earlier run told it to listen on tcp:10.10.1.2:4444"
"""

import contextlib
import os
import re
import signal
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.guest import HEARTBEAT, SERIAL_TAIL, read_tail, watch_heartbeat
from ansible.module_utils.migration import (
    checked_settings,
    connect,
    migrated_account,
    strict_bool,
    tls_parameters,
    write_baseline,
)
from ansible.module_utils.process import wait_exited
from ansible.module_utils.qmp import QMPClient, QMPError


class VM:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.p = module.params
        self.result: dict = {}

    def pid(self) -> int | None:
        """QEMU's pid from the pidfile, when that process is alive and was started with
        this pidfile: a pid the kernel has given to another process since (or another
        QEMU's) is never taken for this VM's."""
        try:
            with open(self.p["pidfile"]) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        if pid <= 0:
            return None
        if self.pidfile_of(self.cmdline(pid)) != os.path.normpath(self.p["pidfile"]):
            return None
        return pid

    @staticmethod
    def pidfile_of(argv: list[str]) -> str | None:
        """The -pidfile argument of a QEMU command line (normalised), or None."""
        for index, flag in enumerate(argv[:-1]):
            if flag in ("-pidfile", "--pidfile"):
                return os.path.normpath(argv[index + 1])
        return None

    @staticmethod
    def cmdline(pid: int) -> list[str]:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                raw = f.read()
        except OSError:
            return []
        return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]]

    def spent_destination(self) -> str:
        """Why a destination waiting for a migration (inmigrate) cannot take a new one,
        or '' when it is fresh: QEMU listens once, and receives once."""
        try:
            with QMPClient(self.p["qmp"], timeout=5) as qmp:
                info = qmp.execute("query-migrate")
        except QMPError as exc:
            return f"its QMP socket does not answer ({exc})"
        if info.get("status") not in (None, "none", "setup"):
            return f"it is receiving a migration already (status {info['status']})"
        if info.get("socket-address") or info.get("status") == "setup":
            where = ", ".join(
                "{}:{}".format(a.get("type"), a.get("path") or f"{a.get('host')}:{a.get('port')}")
                for a in info.get("socket-address") or []
            )
            return "an earlier run told it to listen" + (f" ({where})" if where else "")
        return ""

    def status(self) -> str:
        start = time.monotonic()
        deadline = start + self.p["timeout"]
        while True:
            try:
                with QMPClient(self.p["qmp"], timeout=5) as qmp:
                    return qmp.execute("query-status")["status"]
            except QMPError as exc:
                if time.monotonic() >= deadline:
                    self.module.fail_json(
                        msg="QMP socket {} did not answer within {:.0f} s: {}".format(
                            self.p["qmp"], time.monotonic() - start, exc
                        )
                    )
                time.sleep(0.1)

    def cleanup(self) -> None:
        kept = [self.p["baseline"]] if self.p["baseline"] else []
        for path in [self.p["pidfile"], self.p["qmp"], *self.p["sockets"], *kept]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    @staticmethod
    def wait_exit(pid: int, seconds: float) -> bool:
        return not wait_exited([pid], seconds)

    def stop(self, pid: int) -> str:
        try:
            with QMPClient(self.p["qmp"], timeout=5) as qmp:
                qmp.execute("quit")
        except QMPError:
            pass  # QEMU may close the socket before replying; the pid tells.
        if self.wait_exit(pid, self.p["timeout"]):
            return "quit"
        for sig, name in ((signal.SIGTERM, "SIGTERM"), (signal.SIGKILL, "SIGKILL")):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return name
            if self.wait_exit(pid, self.p["timeout"]):
                return name
        self.module.fail_json(msg=f"QEMU pid {pid} survived SIGKILL")
        return ""

    def start(self) -> None:
        self.cleanup()
        rc, out, err = self.module.run_command(self.p["argv"])
        if rc != 0:
            self.module.fail_json(
                msg=f"QEMU failed to start (exit {rc}): {(err or out).strip()}", argv=self.p["argv"]
            )

    @staticmethod
    def machine(argv: list[str]) -> list[str]:
        """The argv without -incoming: a VM started as a destination is the same machine."""
        out, skip = [], False
        for arg in argv:
            if skip:
                skip = False
            elif arg == "-incoming":
                skip = True
            else:
                out.append(arg)
        return out

    def differences(self, running: list[str]) -> list[str]:
        have, want = self.machine(running), self.machine(self.p["argv"])
        if have == want:
            return []
        return sorted(set(have) ^ set(want)) or ["option order"]

    def not_as_asked(self, pid: int, status: str | None = None) -> tuple[list[str], str]:
        """For QEMU PID, running: the options its command line differs in from the argv,
        and why state=running would restart it ('' when it stays as it is). A source whose
        guest has migrated away (postmigrate) holds nothing: asked to be a destination, it
        is restarted as one (a round trip's way back); so is a destination an earlier run
        used. Any other state is left as it is. STATUS, when already read, saves a query."""
        diff = self.differences(self.cmdline(pid))
        if diff:
            return diff, "its command line differs"
        if "-incoming" not in self.p["argv"]:
            return [], ""
        status = status or self.status()
        if status == "postmigrate":
            return [], "its guest has migrated away (postmigrate)"
        if status == "inmigrate":
            return [], self.spent_destination()
        return [], ""

    def query(self, pid: int | None) -> None:
        """state=query: the VM's pid and run state and, given an argv, whether it runs as
        asked, by the same rules as state=running; nothing is changed."""
        status = self.status() if pid is not None else None
        result = dict(changed=False, pid=pid, status=status, started=False)
        if self.p["argv"]:
            why = "it does not run"
            if pid is not None:
                diff, why = self.not_as_asked(pid, status)
                if diff:
                    why = "it runs with a different command line (differs in: {})".format(
                        " ".join(diff)
                    )
            result["as_asked"] = not why
            if why:
                result["why"] = why
            elif self.p["incoming"] and status == "inmigrate" and not self.module.check_mode:
                self.listen(result)
            elif self.p["serial_log"]:
                self.observe(status, result)
        self.module.exit_json(**result)

    def observe(self, status: str | None, result: dict) -> None:
        """A VM running as asked whose guest has migrated away (the source's account of
        that migration) or arrived (the guest's heartbeat on the destination), into
        RESULT: migrated or guest. Anything unreadable is left for the run's own steps."""
        log = self.p["serial_log"]
        if status == "postmigrate":
            try:
                mon = connect(self.p["qmp"], 5)
                try:
                    account = migrated_account(mon, mon.query())
                finally:
                    mon.close()
            except QMPError:
                return
            if account:
                try:
                    account["serial_tail"] = read_tail(log, SERIAL_TAIL)
                except OSError:
                    return
                result["migrated"] = account
        elif status == "running" and "-incoming" in self.p["argv"]:
            wait = self.p["heartbeat_timeout"]
            heartbeat = watch_heartbeat(log, re.compile(HEARTBEAT), True, timeout=wait)
            result["guest"] = dict(vm_status=status, **heartbeat)

    def listen(self, result: dict) -> None:
        """A fresh destination running as asked told to listen with the O(incoming)
        settings, into RESULT: listening, or why not (incoming_error)."""
        wanted = self.p["incoming"]
        try:
            mon = connect(self.p["qmp"], 5)
        except QMPError as exc:
            result["incoming_error"] = f"its QMP socket does not answer ({exc})"
            return
        try:
            # Which QEMU waits, for the source's check of their machine types
            result["qemu"] = mon.identity(machine_types=True)
            caps, params, _ = checked_settings(mon, wanted["capabilities"], wanted["parameters"])
            tls = wanted.get("tls")
            if tls:  # a TLS migration's destination: the server's credentials, made anew
                params.update(tls_parameters("server", tls["dir"]))
                verify = strict_bool(tls.get("verify_peer", True), "tls.verify_peer")
                mon.load_tls("server", tls["dir"], verify)
            mon.set_capabilities(caps)
            mon.set_parameters(params)
            mon.incoming(wanted["uri"])
        except (QMPError, ValueError) as exc:
            result["incoming_error"] = f"it would not listen on {wanted['uri']}: {exc}"
            return
        finally:
            mon.close()
        # as given: a TLS setting not given is not one (the role compares it with its own)
        listening = {k: v for k, v in wanted.items() if k != "tls" or v is not None}
        result.update(changed=True, listening=listening)

    def keep_baseline(self) -> None:
        """The migration settings of the VM just started, kept in O(baseline)."""
        self.status()  # its QMP socket answers
        try:
            mon = connect(self.p["qmp"], 5)
            try:
                write_baseline(mon, self.p["baseline"])
            finally:
                mon.close()
        except (QMPError, OSError) as exc:
            where = self.p["baseline"]
            self.module.fail_json(msg=f"cannot keep the VM's migration settings in {where}: {exc}")

    def run(self) -> None:
        pid = self.pid()
        if self.p["state"] == "query":
            self.query(pid)
        if self.p["state"] == "absent":
            if pid is None:
                if not self.module.check_mode:
                    self.cleanup()
                self.module.exit_json(changed=False, pid=None, status=None, started=False)
            if self.module.check_mode:
                self.module.exit_json(changed=True, pid=pid, status=None, started=False)
            how = self.stop(pid)
            self.cleanup()
            self.module.exit_json(
                changed=True, pid=None, status=None, started=False, stopped_by=how
            )

        changed = pid is None
        if pid is not None:
            diff, replaced = self.not_as_asked(pid)
            if diff and not self.p["replace"]:
                self.module.fail_json(
                    msg="QEMU pid {} runs with a different command line (differs in: {}); "
                    "set replace=true to restart it".format(pid, " ".join(diff)),
                    pid=pid,
                )
            if replaced:
                changed = True
                self.result["replaced"] = replaced
                if not self.module.check_mode:
                    self.stop(pid)
                    pid = None
        if self.module.check_mode:
            # The status of a VM left as it runs (a read-only query); none for one that
            # would start.
            status = self.status() if pid is not None and not changed else None
            self.module.exit_json(
                changed=changed, pid=pid, status=status, started=changed, **self.result
            )
        if pid is None:
            self.start()
            pid = self.pid()
            if self.p["baseline"]:
                self.keep_baseline()
        started, status = changed, self.status()
        # A destination just started, or found waiting fresh (a spent one was restarted
        # above), told where to listen in the same run; one that cannot take a migration
        # fails, saying why.
        if self.p["incoming"] and "-incoming" in self.p["argv"]:
            if status == "inmigrate":
                self.listen(self.result)
            else:
                self.result["incoming_error"] = (
                    f"it does not wait for a migration (it is {status}): the guest may run there"
                )
            told = bool(self.result.pop("changed", False))
            changed = changed or told
            if "incoming_error" in self.result:
                self.module.fail_json(
                    msg=f"{self.p['qmp']}: {self.result['incoming_error']}",
                    changed=changed,
                    pid=pid,
                    status=status,
                    started=started,
                    **self.result,
                )
        self.module.exit_json(
            changed=changed, pid=pid, status=status, started=started, **self.result
        )


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            argv=dict(type="list", elements="str"),
            pidfile=dict(type="path", required=True),
            qmp=dict(type="path", required=True),
            sockets=dict(type="list", elements="path", default=[]),
            state=dict(type="str", choices=["running", "absent", "query"], default="running"),
            replace=dict(type="bool", default=False),
            timeout=dict(type="float", default=30),
            baseline=dict(type="path"),
            serial_log=dict(type="path"),
            heartbeat_timeout=dict(type="float", default=5),
            incoming=dict(
                type="dict",
                options=dict(
                    uri=dict(type="str", required=True),
                    capabilities=dict(type="dict", default={}),
                    parameters=dict(type="dict", default={}),
                    tls=dict(type="dict"),
                ),
            ),
        ),
        required_if=[("state", "running", ["argv"])],
        supports_check_mode=True,
    )
    VM(module).run()


if __name__ == "__main__":
    main()
