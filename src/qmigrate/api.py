"""qmigrate from Python: build the lab, provision it, migrate, and read past runs.

Every function runs one of the project's playbooks through ansible-runner (see runner.py)
and returns a typed result read from the run's events, or raises a ``QmigrateError``
(errors.py) that names the failing task, host and message::

    from qmigrate import api

    api.lab_up()
    api.provision()
    result = api.migrate(max_bandwidth=50_000_000, capabilities={"multifd": True})
    print(result.status, result.downtime_ms, result.record_path)

``project`` is the qmigrate checkout (default: the one this package is installed from, else
the current directory) and ``inventory`` an inventory path (default: its inventory/lab, the
embedded lab). Artifacts of the newest runs (ansible-runner's stdout and job events) are
kept in ~/.cache/qmigrate/artifacts; errors name their directory.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from qmigrate.errors import BadInput, QmigrateError
from qmigrate.events import Event, published_run, recorded_run
from qmigrate.progress import (
    MONITOR_TIMEOUT,
    MigrationWatch,
    Point,
    ProgressReporter,
    monitor_socket,
    monitor_tools,
)
from qmigrate.results import (
    MigrationResult,
    RunSummary,
    find_record,
    load_result,
    read_record,
)
from qmigrate.results import runs as _recorded_runs
from qmigrate.runner import PlaybookRun, Project, run_playbook

LAB_PLAYBOOK = "playbooks/lab.yml"
TEARDOWN_PLAYBOOK = "playbooks/teardown.yml"
STOP_PLAYBOOK = "playbooks/stop.yml"
PROVISION_PLAYBOOK = "playbooks/provision.yml"
# The main job: lab, provision and launch (each a no-op when done), then the migration.
MIGRATE_PLAYBOOK = "migrate.yml"
MIGRATION_ROLE = "migration"
LAB_SWITCH = "lablan"  # roles/lab's lab_switch default

ProgressCallback = Callable[[Point], None]
TaskCallback = Callable[[str], None]
PathLike = str | Path


def _task_names(on_task: TaskCallback | None) -> Callable[[Event], None]:
    def on_event(event: Event) -> None:
        if on_task is not None and event.get("event") == "playbook_on_task_start":
            data = event.get("event_data") or {}
            on_task(str(data.get("name") or data.get("task") or ""))

    return on_event


def _run(
    playbook: str,
    extra_vars: dict[str, Any] | None,
    project: PathLike | None,
    inventory: PathLike | None,
    on_task: TaskCallback | None,
) -> PlaybookRun:
    located = Project.locate(project, inventory)
    return run_playbook(located, playbook, extra_vars, on_event=_task_names(on_task))


def lab_up(
    *,
    extra_vars: dict[str, Any] | None = None,
    project: PathLike | None = None,
    inventory: PathLike | None = None,
    on_task: TaskCallback | None = None,
) -> PlaybookRun:
    """Build the embedded lab (playbooks/lab.yml); nothing happens for an inventory
    without a ``lab`` group. ON_TASK is called with each task's name as it starts."""
    return _run(LAB_PLAYBOOK, extra_vars, project, inventory, on_task)


def lab_down(
    *,
    extra_vars: dict[str, Any] | None = None,
    project: PathLike | None = None,
    inventory: PathLike | None = None,
    on_task: TaskCallback | None = None,
) -> PlaybookRun:
    """Stop the VMs and remove the embedded lab (playbooks/teardown.yml)."""
    return _run(TEARDOWN_PLAYBOOK, extra_vars, project, inventory, on_task)


def stop_vms(
    *,
    extra_vars: dict[str, Any] | None = None,
    project: PathLike | None = None,
    inventory: PathLike | None = None,
    on_task: TaskCallback | None = None,
) -> PlaybookRun:
    """Stop the study's VMs on every hypervisor, leaving the lab as it is
    (playbooks/stop.yml); the next migration boots its guest anew."""
    return _run(STOP_PLAYBOOK, extra_vars, project, inventory, on_task)


def provision(
    *,
    extra_vars: dict[str, Any] | None = None,
    project: PathLike | None = None,
    inventory: PathLike | None = None,
    on_task: TaskCallback | None = None,
) -> PlaybookRun:
    """Install QEMU, build the guest kernel and image, put them on shared storage and
    bridge the hypervisors' experiment NIC (playbooks/provision.yml)."""
    return _run(PROVISION_PLAYBOOK, extra_vars, project, inventory, on_task)


@dataclass(frozen=True)
class LabStatus:
    """The embedded lab as this machine sees it: each of the lab's network namespaces
    (present or not) and the state of each hypervisor's VM (running, postmigrate,
    inmigrate, ..., absent). Both are empty for an inventory without a lab."""

    inventory: Path
    namespaces: dict[str, bool]
    vms: dict[str, str]

    @property
    def up(self) -> bool:
        return bool(self.namespaces) and all(self.namespaces.values())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "inventory": str(self.inventory), "up": self.up}


def _inventory(project: Project) -> dict[str, Any]:
    """``ansible-inventory --list`` of the project's inventory (variables untemplated)."""
    argv = [project.executable("ansible-inventory"), "--list", "-i", str(project.inventory)]
    try:
        listed = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            cwd=project.root,
            env={**os.environ, **project.envvars()},
            timeout=120,
            check=True,
        )
        listing = json.loads(listed.stdout)
    except (OSError, ValueError, subprocess.SubprocessError) as err:
        detail = getattr(err, "stderr", None) or err
        raise QmigrateError(f"cannot read the inventory {project.inventory}: {detail}") from err
    return listing


def _group_hosts(listing: dict[str, Any], group: str) -> list[str]:
    entry = listing.get(group) or {}
    hosts = list(entry.get("hosts") or [])
    for child in entry.get("children") or []:
        hosts += [host for host in _group_hosts(listing, child) if host not in hosts]
    return hosts


def _namespaces() -> set[str]:
    """The network namespaces present (read-only: ``ip netns list``)."""
    try:
        listed = subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError) as err:
        raise QmigrateError(f"cannot list the network namespaces: {err}") from err
    return {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}


def _vm_state(tools: Any, socket: Path) -> str:
    if not socket.exists():
        return "absent"
    try:
        monitor = tools.connect(str(socket), MONITOR_TIMEOUT)
        try:
            return str(monitor.status())
        finally:
            monitor.close()
    except (OSError, tools.QMPError) as err:
        return f"unknown ({err})"


def lab_status(*, project: PathLike | None = None, inventory: PathLike | None = None) -> LabStatus:
    """Which of the lab's namespaces exist and how its VMs stand. Read-only: it lists
    namespaces and asks each VM's monitor ``info status``; it runs no playbook."""
    located = Project.locate(project, inventory)
    listing = _inventory(located)
    lab_hosts = _group_hosts(listing, "lab")
    if not lab_hosts:
        return LabStatus(located.inventory, {}, {})
    hostvars = (listing.get("_meta") or {}).get("hostvars") or {}
    first = hostvars.get(lab_hosts[0]) or {}
    present = _namespaces()
    expected = [str(first.get("lab_switch", LAB_SWITCH)), *lab_hosts]
    tools = monitor_tools(located.root)
    vm = located.study_setting("qmigrate_vm_name")
    runtime_dir = located.study_setting("qmigrate_runtime_dir")
    vms = {}
    for host in _group_hosts(listing, "hypervisors"):
        own = hostvars.get(host) or {}
        socket = monitor_socket(
            host,
            str(own.get("qmigrate_vm_name", vm)),
            Path(own.get("qmigrate_runtime_dir", runtime_dir)),
        )
        vms[host] = _vm_state(tools, socket)
    return LabStatus(located.inventory, {name: name in present for name in expected}, vms)


def migration_vars(
    *,
    reverse: bool = False,
    max_bandwidth: int | None = None,
    downtime_limit: int | None = None,
    capabilities: dict[str, bool] | None = None,
    parameters: dict[str, Any] | None = None,
    postcopy: bool = False,
    timeout: float | None = None,
    extra_vars: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The extra vars of a migration: EXTRA_VARS with the options as the playbook's
    variables. An option left at its default sets nothing, so the inventory's or
    EXTRA_VARS' value stands; one given both ways with different values is refused."""
    options = {
        "qmigrate_reverse": True if reverse else None,
        "migration_max_bandwidth": max_bandwidth,
        "migration_downtime_limit": downtime_limit,
        "migration_capabilities": capabilities,
        "migration_parameters": parameters,
        "migration_postcopy": True if postcopy else None,
        "migration_timeout": timeout,
    }
    chosen = {name: value for name, value in options.items() if value is not None}
    extra = dict(extra_vars or {})
    clashes = tuple(
        sorted(name for name, value in chosen.items() if name in extra and extra[name] != value)
    )
    if clashes:
        raise BadInput(
            "",
            "",
            f"{', '.join(clashes)}: given both as an option and in the extra vars, differently",
            variables=clashes,
        )
    return {**extra, **chosen}


def migrate(
    *,
    reverse: bool = False,
    max_bandwidth: int | None = None,
    downtime_limit: int | None = None,
    capabilities: dict[str, bool] | None = None,
    parameters: dict[str, Any] | None = None,
    postcopy: bool = False,
    timeout: float | None = None,
    extra_vars: dict[str, Any] | None = None,
    on_progress: ProgressCallback | None = None,
    on_task: TaskCallback | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    project: PathLike | None = None,
    inventory: PathLike | None = None,
) -> MigrationResult:
    """Migrate the VM and verify it (migrate.yml: lab, provision and launch first, each a
    no-op when done) and return the run's result, as recorded in its run.json.

    REVERSE migrates back (destination to source); MAX_BANDWIDTH is in bytes/s (0: no
    cap), DOWNTIME_LIMIT in ms, TIMEOUT in seconds before QEMU's migration is cancelled;
    CAPABILITIES (name: bool) and PARAMETERS (name: value) go to QEMU on both sides,
    checked against what it supports; POSTCOPY switches to postcopy after the first pass.
    EXTRA_VARS sets any other variable. ON_PROGRESS gets a progress point about every
    0.2 s while RAM moves (see progress.py; only where the source's monitor socket is on
    this machine's filesystem), ON_TASK each task's name, ON_RECORD each run's record as
    its outcome is recorded (one per round with migration_rounds in EXTRA_VARS: several
    migrations back and forth in one playbook run; the result returned is the last's).

    Raises BadInput (a variable refused before anything changed), MigrationFailed (with
    the failed run's result), InfrastructureError or PlaybookFailed.
    """
    located = Project.locate(project, inventory)
    extravars = migration_vars(
        reverse=reverse,
        max_bandwidth=max_bandwidth,
        downtime_limit=downtime_limit,
        capabilities=capabilities,
        parameters=parameters,
        postcopy=postcopy,
        timeout=timeout,
        extra_vars=extra_vars,
    )
    show_task = _task_names(on_task)
    reporter: ProgressReporter | None = None
    if on_progress is not None:
        tools = monitor_tools(located.root)
        vm = str(extravars.get("qmigrate_vm_name", located.study_setting("qmigrate_vm_name")))
        runtime_dir = Path(
            extravars.get("qmigrate_runtime_dir", located.study_setting("qmigrate_runtime_dir"))
        )
        reporter = ProgressReporter(
            on_progress,
            lambda source: MigrationWatch(tools, monitor_socket(source, vm, runtime_dir)),
        )

    def on_event(event: Event) -> None:
        show_task(event)
        if on_record is not None:
            record = recorded_run(event)
            if record is not None:
                on_record(record)
        data = event.get("event_data") or {}
        # The migration role runs on the source host: its first event names the source.
        if reporter is not None and data.get("role") == MIGRATION_ROLE and data.get("host"):
            reporter.source_known(str(data["host"]))

    try:
        run = run_playbook(
            located,
            MIGRATE_PLAYBOOK,
            extravars,
            on_event=on_event,
            tick=reporter.tick if reporter is not None else None,
        )
    except BaseException:
        if reporter is not None:
            reporter.finish(None)
        raise
    published = published_run(run.events)
    if published is None:
        raise QmigrateError(
            f"{MIGRATE_PLAYBOOK} succeeded but published no run record "
            f"(was the {MIGRATION_ROLE} role skipped?); see {run.artifacts}"
        )
    result = load_result(*published)
    if reporter is not None:
        timeline = result.record.get("timeline") or []
        reporter.finish(timeline[-1] if timeline else None)
    return result


def _results_dir(results_dir: PathLike | None, project: PathLike | None) -> Path:
    if results_dir is not None:
        return Path(results_dir)
    return Project.locate(project).results


def runs(
    results_dir: PathLike | None = None, *, project: PathLike | None = None
) -> list[RunSummary]:
    """Every recorded run, oldest first (RESULTS_DIR: default the project's results/)."""
    return _recorded_runs(_results_dir(results_dir, project))


def result_of(
    run: str = "latest",
    *,
    results_dir: PathLike | None = None,
    project: PathLike | None = None,
) -> MigrationResult:
    """RUN as a MigrationResult: a run id, 'latest', or a run's directory or run.json.
    Raises BadInput when there is no such run."""
    path = find_record(_results_dir(results_dir, project), run)
    return MigrationResult.from_record(read_record(path), path)


def report(
    run: str = "latest",
    *,
    results_dir: PathLike | None = None,
    project: PathLike | None = None,
) -> dict[str, Any]:
    """The whole record (run.json) of RUN, as for ``result_of``."""
    return result_of(run, results_dir=results_dir, project=project).record


def draw_report(
    run: str = "latest",
    *,
    results_dir: PathLike | None = None,
    project: PathLike | None = None,
) -> Path:
    """Draw RUN's report.md and plots again from its run.json alone; returns report.md's
    path. Raises BadInput when the run has no profile (it was not profiled)."""
    path = find_record(_results_dir(results_dir, project), run)
    record = read_record(path)
    if "profile" not in record:
        raise BadInput(
            "",
            "",
            f"{path} holds no profile: the run was not profiled (migration_profile)",
            variables=("run",),
        )
    from qmigrate.report import write_report

    return write_report(record, path.parent)
