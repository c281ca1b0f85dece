"""The embedded lab, driven the way a user drives it: ansible-playbook on its inventory."""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench import ROOT
from filter_plugins.study import qmigrate_vms

SOURCE, DESTINATION, CLIENT = "labsrc", "labdst", "labclient"
GUEST_ADDRESS = "10.10.1.100"
DESTINATION_ADDRESS = "10.10.1.2"
# The study's settings (roles/qmigrate), which the bench does not override.
STUDY = yaml.safe_load((ROOT / "roles" / "qmigrate" / "defaults" / "main.yml").read_text())
RUNTIME_DIR = Path(STUDY["qmigrate_runtime_dir"])
VM = STUDY["qmigrate_vm_name"]


def default_append() -> str:
    """The vm role's kernel command line, still a template (Ansible fills in the address)."""
    defaults = yaml.safe_load((ROOT / "roles" / "vm" / "defaults" / "main.yml").read_text())
    return defaults["vm_append"]


@dataclass(frozen=True)
class Guest:
    """The VM under test. memory is a QEMU size; the lab's sizes are a multiple of 256 KiB
    plus 4 KiB (see inventory/lab/group_vars/all/study.yml: QEMU 7.2's TCG dirty-bitmap
    bug). dirty is the guest's memory-dirtying rate in MiB/s (0: idle)."""

    label: str
    memory: str
    dirty: int = 0
    dirty_set: int = 64

    def extra_vars(self) -> dict[str, Any]:
        append = default_append()
        if self.dirty:
            append += f" qmigrate.dirty={self.dirty} qmigrate.dirty_set={self.dirty_set}"
        return {
            "vm_memory": self.memory,
            "vm_append": append,
            # Named threads (live_migration, multifdsend_N, CPU n/TCG) for the CPU figures.
            "vm_extra_args": ["-name", "debug-threads=on"],
        }


@dataclass
class Playbook:
    argv: list[str]
    rc: int
    seconds: float
    log: Path
    # The whole machine's CPU time while it ran, as a share of all its cores' time: the
    # controller, the lab's hosts (their modules run on this machine too) and the VMs.
    machine_busy_pct: float | None = None
    # The controller's own CPU time (ansible-playbook, its workers and SSH clients; not
    # the SSH masters nor the modules on the hosts), as a share of all the cores' time.
    controller_cpu_pct: float | None = None


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already in user and nice
    return total - idle, total


def busy_pct(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    busy, total = after[0] - before[0], after[1] - before[1]
    return round(100 * busy / total, 1) if total > 0 else None


@dataclass
class Lab:
    """Runs the project's playbooks from the repository root, logging each run."""

    logs: Path
    extra_vars: dict[str, Any] = field(default_factory=dict)
    _count: int = 0

    def env(self) -> dict[str, str]:
        venv = ROOT / ".venv" / "bin"
        return {
            **os.environ,
            "PATH": f"{venv}:{os.environ.get('PATH', '')}",
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
            # Per-task times in the logs (all of them), for the overhead breakdown.
            "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
            "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "all",
            # SSH masters of this run only: one left from a lab torn down less than
            # ControlPersist ago would still lead into that lab's deleted namespaces.
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.logs.parent / "cp"),
            # On this shared machine a new connection to labclient was now and then closed
            # before sshd's banner (kex_exchange_identification), failing a run whose
            # migration had completed; a retry costs seconds, counted in the overhead.
            "ANSIBLE_SSH_RETRIES": "3",
        }

    def _run(self, argv: list[str], label: str, timeout: float) -> Playbook:
        self.logs.mkdir(parents=True, exist_ok=True)
        self._count += 1
        log = self.logs / f"{self._count:03d}-{label}.log"
        with log.open("w") as out:
            out.write(" ".join(argv) + "\n")
            out.flush()
            started, cpu_before = time.monotonic(), cpu_times()
            children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            proc = subprocess.run(
                argv,
                cwd=ROOT,
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
            seconds = time.monotonic() - started
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
        controller = (children.ru_utime - children_before.ru_utime) + (
            children.ru_stime - children_before.ru_stime
        )
        cores = os.cpu_count() or 1
        return Playbook(
            argv,
            proc.returncode,
            seconds,
            log,
            busy_pct(cpu_before, cpu_times()),
            round(100 * controller / (seconds * cores), 1) if seconds else None,
        )

    def _vars_file(self, extra: dict[str, Any]) -> Path:
        path = self.logs / f"vars-{self._count + 1:03d}.json"
        self.logs.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**self.extra_vars, **extra}, indent=2))
        return path

    def playbook(
        self, playbook: str, extra: dict[str, Any] | None = None, timeout: float = 1800
    ) -> Playbook:
        """ansible-playbook PLAYBOOK (a path from the repository root) with the lab's
        extra variables and EXTRA."""
        vars_file = self._vars_file(extra or {})
        argv = ["ansible-playbook", playbook, "-e", f"@{vars_file}"]
        return self._run(argv, Path(playbook).stem, timeout)

    def must(self, run: Playbook) -> Playbook:
        if run.rc != 0:
            tail = run.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{' '.join(run.argv)} failed (rc {run.rc}), {run.log}:\n{tail}")
        return run

    def up(self) -> None:
        """The lab built and provisioned (nothing is done that is done already)."""
        self.must(self.playbook("playbooks/lab.yml"))
        self.must(self.playbook("playbooks/provision.yml"))

    def down(self) -> None:
        self.must(self.playbook("playbooks/teardown.yml"))

    def stop_vms(self, names: tuple[str, ...] = (VM,)) -> None:
        """Stop the VMs NAMES on both hypervisors."""
        for name in names:
            vars_file = self._vars_file({"vm_state": "absent", "vm_name": name})
            argv = ["ansible", "hypervisors", "-m", "ansible.builtin.include_role", "-a", "name=vm"]
            self.must(self._run([*argv, "-e", f"@{vars_file}"], f"stop-{name}", 300))

    def fresh_pair(self, guest: Guest, count: int = 1) -> None:
        """GUEST booted anew on the source, its destination waiting (-incoming defer); with
        COUNT, that many such pairs (vm0 .. vm<COUNT-1>, qmigrate_vm_count)."""
        self.stop_vms(vm_names(count))
        extra = {**guest.extra_vars(), "qmigrate_vm_count": count}
        self.must(self.playbook("playbooks/launch.yml", extra))


def vm_names(count: int) -> tuple[str, ...]:
    """The names qmigrate gives COUNT VMs."""
    return tuple(vm["name"] for vm in qmigrate_vms(count, VM))


def vm_file(host: str, name: str) -> Path:
    return RUNTIME_DIR / host / VM / name


def qemu_pid(host: str) -> int:
    return int(vm_file(host, "qemu.pid").read_text().strip())


def netns(host: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", host, *argv]


DIRTY_REPORT = re.compile(r"qmigrate-dirty uptime=([0-9.]+) total_kib=(\d+) rate_kib_s=(\d+)")


def dirty_reports(host: str) -> list[tuple[float, int, int]]:
    """The dirtying workload's reports on HOST's serial console: (uptime, total KiB, KiB/s)."""
    text = vm_file(host, "serial.log").read_text(errors="replace")
    return [(float(u), int(t), int(r)) for u, t, r in DIRTY_REPORT.findall(text)]


def wait_for_dirtying(host: str, reports: int = 3, timeout: float = 120) -> None:
    """Until the guest on HOST has reported REPORTS seconds of dirtying (its fill done)."""
    deadline = time.monotonic() + timeout
    while len(dirty_reports(host)) < reports:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the guest on {host} reported no dirtying in {timeout} s")
        time.sleep(0.5)
