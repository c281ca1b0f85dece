"""Running the project's playbooks through ansible-runner.

Each run gets a fresh private data directory (removed afterwards); the repository is the
project directory, and the inventory, extra vars and ANSIBLE_CONFIG are passed explicitly.
Artifacts (stdout, job events) are kept in a cache directory, the newest few runs only.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ansible_runner
import yaml
from ansible_runner.exceptions import AnsibleRunnerException

from qmigrate.errors import BadInput, Interrupted, QmigrateError
from qmigrate.events import Event, published_run, raise_for_failure, stats

KEEP_ARTIFACTS = 5
# How long an interrupted ansible-playbook gets to stop its workers (which close their SSH
# sessions, so the modules on the hosts see their controller go and stop what they do)
# before it is killed.
STOP_GRACE = 30.0
DEFAULT_INVENTORY = Path("inventory") / "lab"
# The study's settings, the one home of what every playbook reads (a defaults-only role).
STUDY_SETTINGS = Path("roles") / "qmigrate" / "defaults" / "main.yml"


def _default_artifacts() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "qmigrate" / "artifacts"


def _is_checkout(path: Path) -> bool:
    return (path / "ansible.cfg").is_file() and (path / "roles").is_dir()


def _package_checkout() -> Path:
    # src/qmigrate/runner.py in a checkout (or an editable install of one)
    return Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Project:
    """A qmigrate checkout: its playbooks, roles, ansible.cfg and results directory."""

    root: Path
    inventory: Path
    artifacts: Path = field(default_factory=_default_artifacts)

    @classmethod
    def locate(
        cls, project: str | Path | None = None, inventory: str | Path | None = None
    ) -> Project:
        """PROJECT (default: the checkout this package runs from, else the current
        directory) with INVENTORY (default: its inventory/lab; a relative path is taken
        from the current directory)."""
        if project is not None:
            root = Path(project).resolve()
        else:
            root = next(
                (path for path in (_package_checkout(), Path.cwd()) if _is_checkout(path)),
                Path.cwd(),
            )
        if not _is_checkout(root):
            raise BadInput(
                "",
                "",
                f"{root} is not a qmigrate checkout (no ansible.cfg and roles/); "
                "give the project directory",
                variables=("project",),
            )
        chosen = Path(inventory).resolve() if inventory is not None else root / DEFAULT_INVENTORY
        if not chosen.exists():
            raise BadInput("", "", f"inventory {chosen} does not exist", variables=("inventory",))
        return cls(root=root, inventory=chosen)

    @property
    def results(self) -> Path:
        """Where the migration role writes run records unless told otherwise."""
        return self.root / "results"

    def study_setting(self, name: str) -> Any:
        """NAME's value in the study's settings (roles/qmigrate's defaults), which an
        inventory or an extra var may override."""
        settings = yaml.safe_load((self.root / STUDY_SETTINGS).read_text()) or {}
        return settings[name]

    @property
    def variable_prefixes(self) -> tuple[str, ...]:
        """Every public variable of the project begins with a role's name or qmigrate."""
        roles = sorted(path.name for path in (self.root / "roles").iterdir() if path.is_dir())
        return ("qmigrate", *roles)

    def envvars(self) -> dict[str, str]:
        env = {
            "ANSIBLE_CONFIG": str(self.root / "ansible.cfg"),
            # ansible-runner puts its own callbacks on the path in an environment variable,
            # which hides ansible.cfg's callback_plugins: named here, runner adds its own
            # after it (the project's callbacks that need no enabling, qmigrate_prebuild).
            "ANSIBLE_CALLBACK_PLUGINS": str(self.root / "callback_plugins"),
            # The project's own screen output, even when this process runs under an
            # ansible-playbook with another (campaign.yml's action, a test's JSON output):
            # ansible-runner's events come from what it wraps.
            "ANSIBLE_STDOUT_CALLBACK": self.stdout_callback(),
        }
        # Ansible's commands beside this Python (its virtual environment's), even when
        # that environment is not activated.
        bindir = Path(sys.executable).parent
        if (bindir / "ansible-playbook").exists():
            env["PATH"] = os.pathsep.join([str(bindir), os.environ.get("PATH", os.defpath)])
        return env

    def stdout_callback(self) -> str:
        """The screen output ansible.cfg names (Ansible's default when it names none)."""
        config = configparser.ConfigParser(interpolation=None)
        config.read(self.root / "ansible.cfg")
        return config.get("defaults", "stdout_callback", fallback="default")

    def executable(self, name: str) -> str:
        """An Ansible command, found as envvars() has ansible-runner find ansible-playbook."""
        found = shutil.which(name, path=self.envvars().get("PATH"))
        if found is None:
            raise QmigrateError(f"{name} not found: install ansible-core beside {sys.executable}")
        return found


@dataclass(frozen=True)
class PlaybookRun:
    """A playbook run that succeeded: its job events and where its artifacts are."""

    playbook: str
    status: str
    rc: int
    events: list[Event] = field(repr=False)
    artifacts: Path

    @property
    def changed(self) -> dict[str, int]:
        """Changed tasks per host."""
        return dict((stats(self.events) or {}).get("changed") or {})

    def to_dict(self) -> dict[str, Any]:
        return {
            "playbook": self.playbook,
            "status": self.status,
            "rc": self.rc,
            "changed": self.changed,
            "artifacts": str(self.artifacts),
        }


def run_playbook(
    project: Project,
    playbook: str,
    extravars: dict[str, Any] | None = None,
    *,
    on_event: Callable[[Event], None] | None = None,
    tick: Callable[[], None] | None = None,
    interval: float = 0.2,
) -> PlaybookRun:
    """Run PLAYBOOK (a path relative to the project) and return it, or raise what failed.

    ON_EVENT sees each job event as it arrives (from ansible-runner's thread); TICK is
    called about every INTERVAL seconds while the playbook runs (from this thread). Ctrl-C,
    or an exception from TICK, stops the playbook and propagates: ansible-playbook first
    gets SIGINT, as from a terminal, which it passes on to its workers and their SSH
    sessions (a module whose session closes stops its migration, see qemu_migrate); only
    if it has not ended after STOP_GRACE seconds is it killed, as ansible-runner's cancel
    does (SIGKILL, which would leave the workers and their modules running).
    """
    if not (project.root / playbook).is_file():
        raise BadInput("", "", f"no playbook {playbook} in {project.root}", variables=("playbook",))
    events: list[Event] = []
    cancelled = threading.Event()
    playbook_pid: list[int] = []  # ansible-playbook's, from its first event

    def handle(event: Event) -> bool:
        events.append(event)
        if not playbook_pid and isinstance(event.get("pid"), int):
            playbook_pid.append(event["pid"])
        if on_event is not None:
            on_event(event)
        return True  # and keep it in the artifacts

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    ident = f"{stamp}-{Path(playbook).stem}-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory(prefix="qmigrate-runner-") as private_data_dir:
        try:
            thread, runner = ansible_runner.run_async(
                private_data_dir=private_data_dir,
                project_dir=str(project.root),
                playbook=playbook,
                # A list: a single string that is no file would be taken as inventory text.
                inventory=[str(project.inventory)],
                envvars=project.envvars(),
                extravars=dict(extravars or {}),
                artifact_dir=str(project.artifacts),
                ident=ident,
                rotate_artifacts=KEEP_ARTIFACTS,
                quiet=True,
                event_handler=handle,
                cancel_callback=cancelled.is_set,
            )
        except AnsibleRunnerException as err:
            raise QmigrateError(f"ansible-runner cannot run {playbook}: {err}") from err
        try:
            while thread.is_alive():
                if tick is not None:
                    tick()
                thread.join(interval)
        except BaseException as stop:  # Ctrl-C, or the caller's tick failed: stop it too
            stop_playbook(thread, playbook_pid[0] if playbook_pid else None, cancelled)
            if isinstance(stop, KeyboardInterrupt):
                written = published_run(events)
                record = written[1] if written is not None else None
                raise Interrupted(playbook, record, project.artifacts / ident) from stop
            raise
    artifacts = project.artifacts / ident
    rc = runner.rc if runner.rc is not None else -1
    if runner.status != "successful":
        raise_for_failure(
            events,
            playbook=playbook,
            status=str(runner.status),
            rc=rc,
            prefixes=project.variable_prefixes,
            artifacts=artifacts,
        )
    return PlaybookRun(playbook, str(runner.status), rc, events, artifacts)


def stop_playbook(thread: threading.Thread, pid: int | None, cancelled: threading.Event) -> None:
    """Stop a running playbook the way Ctrl-C in a terminal would (SIGINT to
    ansible-playbook, which stops its workers and their SSH sessions); if it has not
    ended within STOP_GRACE seconds, or a second Ctrl-C comes, kill it (ansible-runner's
    cancel)."""
    try:
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
            thread.join(STOP_GRACE)
    finally:
        cancelled.set()
        thread.join()
