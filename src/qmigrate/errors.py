"""What can go wrong when qmigrate runs the project's playbooks, as exceptions.

Every error is a ``QmigrateError``. A playbook that fails raises a ``PlaybookFailed`` naming
the task, the host and Ansible's message; its subclasses say whose fault it was, which the
CLI turns into distinct exit codes:

- ``BadInput``: a variable or argument was refused before anything changed;
- ``MigrationFailed``: the migration itself failed (or failed verification) and was recorded;
- ``InfrastructureError``: a host could not be reached.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qmigrate.results import MigrationResult


class QmigrateError(Exception):
    """Base class of every error qmigrate raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PlaybookFailed(QmigrateError):
    """A playbook failed: TASK on HOST with Ansible's MESSAGE (either may be empty when
    ansible-playbook stopped before running a task). ARTIFACTS is ansible-runner's artifact
    directory of the run (its stdout, the job events)."""

    def __init__(
        self,
        task: str,
        host: str,
        message: str,
        *,
        playbook: str = "",
        artifacts: Path | None = None,
    ) -> None:
        super().__init__(message)
        self.task = task
        self.host = host
        self.playbook = playbook
        self.artifacts = artifacts

    def __str__(self) -> str:
        where = f" (task {self.task!r} on {self.host})" if self.task else ""
        return f"{self.message}{where}"


class BadInput(PlaybookFailed):
    """Input was refused before anything changed; VARIABLES names what was wrong."""

    def __init__(
        self,
        task: str,
        host: str,
        message: str,
        *,
        variables: tuple[str, ...] = (),
        playbook: str = "",
        artifacts: Path | None = None,
    ) -> None:
        super().__init__(task, host, message, playbook=playbook, artifacts=artifacts)
        self.variables = variables


class InfrastructureError(PlaybookFailed):
    """A host could not be reached (SSH, or the lab's namespaces are gone)."""


class MigrationFailed(PlaybookFailed):
    """The migration failed or failed verification. RESULT is the run's record, when the
    role wrote one (it does for every migration it started)."""

    def __init__(
        self,
        task: str,
        host: str,
        message: str,
        *,
        result: MigrationResult | None = None,
        playbook: str = "",
        artifacts: Path | None = None,
    ) -> None:
        super().__init__(task, host, message, playbook=playbook, artifacts=artifacts)
        self.result = result


class Interrupted(KeyboardInterrupt):
    """The caller interrupted a playbook (Ctrl-C, or SIGTERM to the qmigrate command), which
    was then stopped. RECORD is the run.json a migration wrote before it was interrupted
    (its status says interrupted), when it had got that far. A KeyboardInterrupt, so that
    code catching Ctrl-C catches it."""

    def __init__(self, playbook: str, record: Path | None, artifacts: Path | None) -> None:
        super().__init__(f"{playbook} interrupted")
        self.playbook = playbook
        self.record = record
        self.artifacts = artifacts
