"""Reading a playbook run from ansible-runner's job events, never from its stdout.

Functions over the event dicts ansible-runner hands its ``event_handler`` (and writes to
``artifacts/<ident>/job_events``): ``{"event": "runner_on_ok", "counter": 12,
"event_data": {"task": ..., "host": ..., "role": ..., "task_action": ..., "res": {...}}}``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qmigrate.errors import BadInput, InfrastructureError, MigrationFailed, PlaybookFailed
from qmigrate.results import load_result

Event = dict[str, Any]

# What the migration role publishes (roles/migration/tasks/record.yml): set_stats data
# (ansible-runner passes it on as the stats event's artifact_data) and, before it, the fact
# holding the whole record; the copy that writes run.json reports its dest.
RUN_STAT = "qmigrate_run"
RUN_JSON_STAT = "qmigrate_run_json"
RUN_FACT = "migration_result"
RUN_JSON_NAME = "run.json"

_FAILED = "runner_on_failed"
_UNREACHABLE = "runner_on_unreachable"
_ARG_SPEC_TASK = "Validating arguments against arg spec"
# The check of every input before any host is touched (playbooks/validate.yml): its result
# lists each refused variable.
_INPUTS_ACTIONS = {"qmigrate_inputs", "ansible.legacy.qmigrate_inputs"}
_ASSERT_ACTIONS = {"assert", "ansible.builtin.assert", "ansible.legacy.assert"}
_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class Failure:
    """The failed (or unreachable) task that ended a playbook run."""

    unreachable: bool
    task: str
    host: str
    action: str
    message: str
    result: dict[str, Any]


def _data(event: Event) -> dict[str, Any]:
    return event.get("event_data") or {}


def stats(events: Sequence[Event]) -> dict[str, Any] | None:
    """The play recap (per-host ok, changed, failures, dark, ..., and artifact_data)."""
    for event in reversed(events):
        if event.get("event") == "playbook_on_stats":
            return _data(event)
    return None


def recorded_run(event: Event) -> dict[str, Any] | None:
    """The run record in EVENT when it is the migration role's record of a run's outcome
    (the record task's fact; not the record of a run still under way, status
    interrupted): with migration_rounds, one per round, as each ends."""
    if event.get("event") != "runner_on_ok":
        return None
    fact = ((_data(event).get("res") or {}).get("ansible_facts") or {}).get(RUN_FACT)
    if isinstance(fact, dict) and fact.get("status") not in (None, "interrupted"):
        return fact
    return None


def published_run(events: Sequence[Event]) -> tuple[dict[str, Any], Path | None] | None:
    """The run record the migration role published and where it wrote run.json.

    The role's set_stats data (the record without timeline and events, and the path) is
    preferred; without it, the record comes from the set_fact of ``migration_result``
    and the path from the copy task that wrote run.json.
    """
    recap = stats(events) or {}
    published = recap.get("artifact_data") or {}
    if isinstance(published.get(RUN_STAT), dict):
        path = published.get(RUN_JSON_STAT)
        return published[RUN_STAT], Path(path) if path else None
    record = None
    path = None
    for event in events:
        if event.get("event") != "runner_on_ok":
            continue
        res = _data(event).get("res") or {}
        fact = (res.get("ansible_facts") or {}).get(RUN_FACT)
        if isinstance(fact, dict):
            record = fact
        dest = res.get("dest")
        if isinstance(dest, str) and dest.endswith("/" + RUN_JSON_NAME):
            path = Path(dest)
    return (record, path) if record is not None else None


def _message(res: dict[str, Any]) -> str:
    """Ansible's message for a failed result, with a failed loop item's or stderr's detail."""
    message = str(res.get("msg") or res.get("reason") or "").strip()
    for item in res.get("results") or []:
        if isinstance(item, dict) and item.get("failed"):
            message = f"{message}: {_message(item)}" if message else _message(item)
            break
    stderr = str(res.get("stderr") or "").strip()
    if stderr and stderr not in message:
        message = f"{message}: {stderr[-500:]}" if message else stderr[-500:]
    return message or "failed"


def _to_failure(event: Event) -> Failure:
    data = _data(event)
    res = data.get("res") or {}
    return Failure(
        unreachable=event.get("event") == _UNREACHABLE,
        task=str(data.get("task") or ""),
        host=str(data.get("host") or ""),
        action=str(data.get("resolved_action") or data.get("task_action") or ""),
        message=_message(res),
        result=res,
    )


def failure(events: Sequence[Event]) -> Failure | None:
    """The failure that ended the run: for each host the recap counts as failed or
    unreachable, its last failure (earlier ones were rescued), the earliest of those.

    A rescued failure is reported as failed too, but the recap counts it as rescued; a
    failure with ignore_errors does not count at all. Without a recap (the run was cut
    short) the first failure that was not ignored is taken.
    """
    candidates = [
        event
        for event in events
        if event.get("event") in (_FAILED, _UNREACHABLE) and not _data(event).get("ignore_errors")
    ]
    recap = stats(events)
    if recap is not None:
        failed_hosts = set(recap.get("failures") or {}) | set(recap.get("dark") or {})
        last: dict[str, Event] = {}
        for event in candidates:
            host = _data(event).get("host")
            if host in failed_hosts:
                last[host] = event
        candidates = sorted(last.values(), key=lambda event: event.get("counter", 0))
    return _to_failure(candidates[0]) if candidates else None


def error_lines(events: Iterable[Event]) -> list[str]:
    """What ansible-playbook said when it stopped before running any task (a playbook that
    does not parse, a command not found): its [ERROR] lines, else its last line. Such a run
    has no task events to read."""
    said = []
    for event in events:
        said += _ESCAPES.sub("", str(event.get("stdout") or "")).splitlines()
    said = [line.strip() for line in said if line.strip()]
    errors = [line.removeprefix("[ERROR]:").strip() for line in said if line.startswith("[ERROR]")]
    return errors or said[-1:]


def named_variables(failed: Failure, prefixes: Iterable[str]) -> tuple[str, ...]:
    """The variables a failure blames: the argument-spec options its errors name, or in any
    other message the names that begin with one of PREFIXES (role names, ``qmigrate``):
    the project prefixes every public variable so."""
    invalid = failed.result.get("invalid")
    if failed.action in _INPUTS_ACTIONS and isinstance(invalid, list):
        return tuple(dict.fromkeys(str(item.get("variable")) for item in invalid))
    spec = failed.result.get("argument_spec_data")
    errors = failed.result.get("argument_errors")
    if isinstance(spec, dict) and errors:
        text = "\n".join(map(str, errors))
        return tuple(name for name in spec if re.search(rf"\b{re.escape(name)}\b", text))
    alternatives = "|".join(re.escape(prefix) for prefix in sorted(prefixes, key=len, reverse=True))
    if not alternatives:
        return ()
    found = re.findall(rf"\b(?:{alternatives})_[a-z0-9_]*[a-z0-9]\b", failed.message)
    return tuple(dict.fromkeys(found))


def _is_argument_check(failed: Failure) -> bool:
    return (
        failed.action in _INPUTS_ACTIONS
        or failed.task.startswith(_ARG_SPEC_TASK)
        or failed.action.endswith("validate_argument_spec")
        or "argument_errors" in failed.result
    )


def raise_for_failure(
    events: Sequence[Event],
    *,
    playbook: str,
    status: str,
    rc: int,
    prefixes: Iterable[str],
    artifacts: Path | None = None,
) -> None:
    """Raise the exception that says why a failed run failed.

    - a host unreachable: ``InfrastructureError``;
    - the check of every input (qmigrate_inputs), or an argument spec, that refused a
      variable: ``BadInput`` naming it;
    - a failure after the migration role recorded a failed migration, or a failed
      verification: ``MigrationFailed`` carrying that record (a failure after a record of
      success, such as run.json not written, is not the migration's);
    - an assert whose message names a variable: ``BadInput``;
    - anything else: ``PlaybookFailed``.
    """
    where = {"playbook": playbook, "artifacts": artifacts}
    failed = failure(events)
    if failed is None:
        said = "; ".join(error_lines(events)) or "no task failed"
        raise PlaybookFailed(
            "", "", f"ansible-playbook {playbook} ended {status} (rc {rc}): {said}", **where
        )
    if failed.unreachable:
        raise InfrastructureError(failed.task, failed.host, failed.message, **where)
    if _is_argument_check(failed):
        variables = named_variables(failed, prefixes)
        raise BadInput(failed.task, failed.host, failed.message, variables=variables, **where)
    run = published_run(events)
    if run is not None:
        result = load_result(*run)
        if result.status != "completed" or result.verified is False:
            raise MigrationFailed(failed.task, failed.host, failed.message, result=result, **where)
    variables = named_variables(failed, prefixes)
    if failed.action in _ASSERT_ACTIONS and variables:
        raise BadInput(failed.task, failed.host, failed.message, variables=variables, **where)
    raise PlaybookFailed(failed.task, failed.host, failed.message, **where)
