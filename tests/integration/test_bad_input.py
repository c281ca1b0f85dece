"""Issue 12: bad input is refused before anything changes, however it comes.

Each case is a user's mistake given to `ansible-playbook migrate.yml` (as -e key=value,
the way the README tells users to set variables, or as JSON), to the qmigrate command or
to the Python API, on a lab whose VMs run. Each must exit 2 (BadInput in Python) naming
the variable, within 10 s, with both QEMUs (run state, migration, capabilities,
parameters), the lab's namespaces and routes and the files under results/ exactly as
before, and no task run on any lab host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import monitor_state
from labrun import ENV, ROOT, lab_namespaces, run_playbooks

from qmigrate import api
from qmigrate.errors import BadInput

pytestmark = pytest.mark.lab

RESULTS = ROOT / "results"
EXEC_MARKER = Path(f"/tmp/qmigrate-exec-{uuid.uuid4().hex[:8]}")
HOSTS = ("labsrc", "labdst")
SECONDS = 10


@dataclass(frozen=True)
class Case:
    name: str
    way: str  # playbook (-e items as given), cli (qmigrate argv), api (api.migrate kwargs)
    given: object
    variable: str

    def __str__(self) -> str:
        return self.name


def playbook(name: str, variable: str, *extra: str) -> Case:
    return Case(name, "playbook", extra, variable)


def as_json(name: str, variable: str, value: dict) -> Case:
    return Case(name, "playbook", (json.dumps(value),), variable)


CASES = [
    playbook("port-out-of-range", "migration_port", "migration_port=70000"),
    playbook("port-zero", "migration_port", "migration_port=0"),
    as_json("exec-uri", "migration_uri", {"migration_uri": f"exec:touch {EXEC_MARKER}"}),
    as_json("uri-elsewhere", "migration_uri", {"migration_uri": "tcp:192.0.2.1:4444"}),
    playbook("run-id-escapes-results", "migration_run_id", "migration_run_id=../../elsewhere"),
    playbook("negative-timeout", "migration_timeout", "migration_timeout=-1"),
    playbook("infinite-timeout", "migration_timeout", "migration_timeout=inf"),
    playbook("zero-poll-interval", "migration_poll_interval", "migration_poll_interval=0"),
    playbook("negative-bandwidth", "migration_max_bandwidth", "migration_max_bandwidth=-1"),
    playbook("bandwidth-not-a-number", "migration_max_bandwidth", "migration_max_bandwidth=4MB"),
    playbook("unknown-transport", "migration_transport", "migration_transport=udp"),
    playbook("unix-across-hosts", "migration_transport", "migration_transport=unix"),
    as_json(
        "unknown-capability",
        "migration_capabilities",
        {"migration_capabilities": {"warp-drive": True}},
    ),
    as_json(
        "capability-maybe",
        "migration_capabilities",
        {"migration_capabilities": {"multifd": "maybe"}},
    ),
    as_json(
        "zero-channels", "migration_parameters", {"migration_parameters": {"multifd-channels": 0}}
    ),
    playbook("bad-memory-size", "vm_memory", "vm_memory=12x"),
    playbook("too-many-pairs", "qmigrate_vm_count", "qmigrate_vm_count=33"),
    playbook(
        "run-id-for-two-pairs", "migration_run_id", "qmigrate_vm_count=2", "migration_run_id=x"
    ),
    playbook("guest-on-a-host-address", "vm_guest_address", "vm_guest_address=10.10.1.2/24"),
    playbook("public-lab-subnet", "lab_subnet", "lab_subnet=8.8.8.0/24"),
    playbook("postcopy-perhaps", "migration_postcopy", "migration_postcopy=perhaps"),
    playbook("vm-name-with-a-path", "qmigrate_vm_name", "qmigrate_vm_name=../vm"),
    playbook("tap-name-too-long", "vm_tap", "vm_tap=averyverylongtapname"),
    playbook("unknown-source", "qmigrate_source", "qmigrate_source=nowhere"),
    playbook("wired-destination", "migration_destination", "migration_destination=labclient"),
    Case("cli-negative-timeout", "cli", ("--timeout", "-1"), "--timeout"),
    Case(
        "cli-parameter-not-a-number",
        "cli",
        ("--parameter", "max-bandwidth=fast"),
        "migration_parameters",
    ),
    Case("cli-port-zero", "cli", ("-e", "migration_port=0"), "migration_port"),
    Case(
        "cli-unknown-capability", "cli", ("--capability", "warp-drive=on"), "migration_capabilities"
    ),
    Case("api-nan-timeout", "api", {"timeout": float("nan")}, "migration_timeout"),
    Case(
        "api-file-uri", "api", {"extra_vars": {"migration_uri": "file:/tmp/state"}}, "migration_uri"
    ),
    Case("api-downtime-too-long", "api", {"downtime_limit": 3_000_000}, "migration_downtime_limit"),
]


def snapshot() -> dict:
    """Everything a refused input must leave as it was."""
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True, check=True).stdout
    results = (
        {str(p.relative_to(RESULTS)): p.lstat().st_mtime_ns for p in RESULTS.rglob("*")}
        if RESULTS.exists()
        else {}
    )
    return {
        "vms": {host: monitor_state(host) for host in HOSTS},
        "namespaces": lab_namespaces(),
        "routes": routes,
        "results": results,
        "latest": str((RESULTS / "latest").resolve()) if (RESULTS / "latest").exists() else None,
    }


def hosts_in_events(artifacts: Path) -> set[str]:
    """The hosts any task ran on, from ansible-runner's job events."""
    hosts = set()
    for path in (artifacts / "job_events").glob("*.json"):
        host = (json.loads(path.read_text()).get("event_data") or {}).get("host")
        if host:
            hosts.add(host)
    return hosts


def hosts_in_report(stdout: str) -> set[str]:
    """The hosts any task ran on, from the JSON callback's report."""
    hosts = set()
    for play in json.loads(stdout)["plays"]:
        for task in play["tasks"]:
            hosts |= set(task["hosts"])
    return hosts


def refuse(case: Case) -> tuple[int, str, tuple[str, ...], set[str]]:
    """Run CASE: its exit status, what it said, the variables it named, the hosts tasks
    ran on."""
    if case.way == "playbook":
        options = tuple(item for value in case.given for item in ("-e", value))
        run = run_playbooks("migrate.yml", options=options, timeout=120)
        return run.rc, run.text, (), hosts_in_report(run.stdout)
    if case.way == "cli":
        argv = [sys.executable, "-m", "qmigrate", "--json", "migrate", *case.given]
        proc = subprocess.run(
            argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
        )
        if proc.returncode == 2 and not proc.stdout.strip():  # argparse refused it
            return proc.returncode, proc.stderr, (), set()
        error = json.loads(proc.stdout)["error"]
        hosts = hosts_in_events(Path(error["artifacts"]))
        return proc.returncode, error["message"], tuple(error["variables"]), hosts
    try:
        api.migrate(**case.given)
    except BadInput as refused:
        return 2, str(refused), refused.variables, hosts_in_events(refused.artifacts)
    return 0, "api.migrate did not refuse", (), set()


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_input_is_refused_before_anything_changes(pair, case):
    before = snapshot()
    started = time.monotonic()

    status, said, variables, hosts = refuse(case)

    elapsed = time.monotonic() - started
    assert status == 2, said[-3000:]
    assert case.variable in said
    assert not variables or case.variable in variables
    assert elapsed < SECONDS, f"refused after {elapsed:.1f} s"
    assert hosts <= {"localhost"}, f"tasks ran on {hosts}"
    assert snapshot() == before
    assert not EXEC_MARKER.exists()


def test_bad_input_is_refused_when_there_is_nothing_to_do(pair):
    migrated = run_playbooks("migrate.yml", extra_vars={"migration_profile": False})
    assert migrated.rc == 0, migrated.text[-3000:]
    before = snapshot()

    run = run_playbooks("migrate.yml", options=("-e", "migration_port=70000"))

    assert run.rc == 2, run.text[-3000:]
    assert "migration_port: 70000 is out of range" in run.text
    assert hosts_in_report(run.stdout) <= {"localhost"}
    assert snapshot() == before


def test_numbers_and_booleans_given_as_strings_migrate(pair):
    run = run_playbooks(
        "migrate.yml",
        options=(
            "-e", "migration_max_bandwidth=400000000",
            "-e", "migration_downtime_limit=500",
            "-e", "migration_timeout=120",
            "-e", "migration_poll_interval=0.2",
            "-e", "migration_profile=false",
            "-e", '{"migration_capabilities": {"auto-converge": "off", "events": "on"}}',
            "-e", '{"migration_parameters": {"max-postcopy-bandwidth": "0"}}',
        ),
    )  # fmt: skip

    assert run.rc == 0, run.text[-3000:]
    record = json.loads((RESULTS / "latest" / "run.json").read_text())
    assert record["status"] == "completed"
    assert record["parameters"]["max-bandwidth"] == 400000000
    assert record["parameters"]["downtime-limit"] == 500
    assert record["capabilities"]["auto-converge"] is False


def test_the_lab_takes_only_a_private_subnet_and_its_route_comes_first():
    """lab_netns itself (check mode: nothing is built), for a lab that does not exist."""
    hosts = {"qmtestsrc": "10.99.0.1/24"}
    args = {"hosts": hosts, "subnet": "10.99.0.0/24", "switch": "qmtestsw"}

    planned = run_playbooks_module(args)
    public = run_playbooks_module(
        {**args, "hosts": {"qmtestsrc": "8.8.8.1/24"}, "subnet": "8.8.8.0/24"}
    )

    assert planned["actions"][0] == "ip route add unreachable 10.99.0.0/24"
    assert public["failed"] is True
    assert "8.8.8.0/24 is not a private IPv4 network" in public["msg"]


def run_playbooks_module(args: dict) -> dict:
    """lab_netns on localhost in check mode; its result."""
    argv = ["ansible", "localhost", "-m", "lab_netns", "-a", json.dumps(args), "--check"]
    proc = subprocess.run(
        argv,
        cwd=ROOT,
        env={**os.environ, **ENV},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
