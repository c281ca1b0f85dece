"""Run the project's playbooks against the embedded lab, as a user would."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ansible.module_utils.qmp import HMPClient, QMPClient

ROOT = Path(__file__).resolve().parents[2]
LAB_NAMESPACES = ("lablan", "labsrc", "labdst", "labclient")


@dataclass
class PlaybookRun:
    rc: int
    stdout: str
    stderr: str

    @property
    def reports(self) -> list[dict]:
        """The JSON callback's documents, one per playbook."""
        decoder, docs, pos = json.JSONDecoder(), [], 0
        while pos < len(self.stdout.rstrip()):
            doc, pos = decoder.raw_decode(self.stdout, pos)
            docs.append(doc)
            while pos < len(self.stdout) and self.stdout[pos].isspace():
                pos += 1
        return docs

    @property
    def changed(self) -> dict[str, int]:
        """Changed tasks per host, over all the playbooks run."""
        total: dict[str, int] = {}
        for doc in self.reports:
            for host, stats in doc["stats"].items():
                total[host] = total.get(host, 0) + stats["changed"]
        return total

    @property
    def text(self) -> str:
        return self.stdout + self.stderr

    def task_results(self, name: str) -> list[dict]:
        """Every host's result of each task NAME (with or without its role's prefix,
        "vm : "), over all the plays."""
        return [
            result
            for doc in self.reports
            for play in doc["plays"]
            for task in play["tasks"]
            if task["task"]["name"] == name or task["task"]["name"].endswith(f" : {name}")
            for result in task["hosts"].values()
        ]


ENV = {
    "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
    "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
    "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
    "ANSIBLE_NOCOLOR": "1",
}


def playbook_argv(
    *playbooks: str, extra_vars: dict | None = None, options: tuple[str, ...] = ()
) -> list[str]:
    """NAME is playbooks/NAME.yml; a path ending in .yml is taken from the repository root."""
    argv = ["ansible-playbook", *options]
    argv += [p if p.endswith(".yml") else f"playbooks/{p}.yml" for p in playbooks]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    return argv


def start_playbooks(*playbooks: str, extra_vars: dict | None = None) -> subprocess.Popen:
    """The same, in the background, for a test that acts while the playbook runs."""
    return subprocess.Popen(
        playbook_argv(*playbooks, extra_vars=extra_vars),
        cwd=ROOT,
        env={**os.environ, **ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_playbooks(
    *playbooks: str,
    extra_vars: dict | None = None,
    options: tuple[str, ...] = (),
    timeout: int = 1200,
):
    """ansible-playbook on the lab inventory; the JSON callback gives per-host stats."""
    return _run(playbook_argv(*playbooks, extra_vars=extra_vars, options=options), timeout)


def run_module(
    pattern: str, module: str, args: dict, extra_vars: dict | None = None, timeout: int = 600
) -> PlaybookRun:
    """An ad-hoc `ansible PATTERN -m MODULE` on the lab inventory (JSON output)."""
    argv = ["ansible", pattern, "-m", module, "-a", json.dumps(args)]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    return _run(argv, timeout)


def _run(argv: list[str], timeout: int) -> PlaybookRun:
    proc = subprocess.run(
        argv,
        cwd=ROOT,
        env={**os.environ, **ENV},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return PlaybookRun(proc.returncode, proc.stdout, proc.stderr)


def socat(socket: str, line: str) -> str:
    """A command typed into a monitor socket the way the seed does: socat stdio."""
    out = subprocess.run(
        ["socat", "stdio", f"unix-connect:{socket}"],
        input=line + "\n",
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return out.stdout


def lab_namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()} & set(
        LAB_NAMESPACES
    )


VM_DIR = Path("/run/qmigrate/{host}/vm0")
HEARTBEAT = re.compile(r"qmigrate-heartbeat (\d+) ")


def vm_file(host: str, name: str) -> str:
    return str(VM_DIR).format(host=host) + "/" + name


def qmp_status(host: str) -> str:
    with QMPClient(vm_file(host, "qmp.sock"), timeout=5) as qmp:
        return qmp.execute("query-status")["status"]


def qemu_pid(host: str) -> int:
    return int(Path(vm_file(host, "qemu.pid")).read_text())


def last_heartbeat(host: str) -> int:
    beats = HEARTBEAT.findall(Path(vm_file(host, "serial.log")).read_text(errors="replace"))
    return int(beats[-1]) if beats else 0


def hmp(host: str, line: str) -> str:
    """A command on the VM's HMP socket, which stays free while a module holds QMP."""
    with HMPClient(vm_file(host, "monitor.sock"), timeout=10) as mon:
        return mon.command(line)


def heartbeat_advances(host: str, seconds: float = 10) -> bool:
    """Whether the guest on HOST prints a new heartbeat within SECONDS."""
    first = last_heartbeat(host)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if last_heartbeat(host) > first:
            return True
        time.sleep(0.2)
    return False


def stop_vms(pattern: str = "hypervisors", names: tuple[str, ...] = ("vm0",)) -> None:
    """Stop the VMs NAMES on the hypervisors matching PATTERN (the vm role, vm_state
    absent)."""
    for name in names:
        run = run_module(
            pattern,
            "ansible.builtin.include_role",
            {"name": "vm"},
            extra_vars={"vm_state": "absent", "vm_name": name},
        )
        assert run.rc == 0, run.text[-3000:]
