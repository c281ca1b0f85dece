"""Unit tests for the Python API and the qmigrate command, without the lab or Ansible runs:
job events as ansible-runner hands them over, the exceptions they become, the command
line, tables and the progress bar, and progress read from a fake HMP monitor on a real
UNIX socket."""

from __future__ import annotations

import io
import json
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from qmigrate import api, cli
from qmigrate.display import StatusLine, progress_line, runs_table
from qmigrate.errors import (
    BadInput,
    InfrastructureError,
    MigrationFailed,
    PlaybookFailed,
)
from qmigrate.events import failure, named_variables, published_run, raise_for_failure
from qmigrate.progress import MigrationWatch, ProgressReporter, monitor_tools
from qmigrate.results import MigrationResult
from qmigrate.runner import PlaybookRun
from tests import ROOT

MIB = 1024 * 1024
PREFIXES = ("qmigrate", "migration", "lab", "vm", "qemu")
RUN_ID = "20261125T220218Z-vm0-labsrc-to-labdst"


def record(**changes: Any) -> dict[str, Any]:
    """A run record as roles/migration/tasks/record.yml writes it (abridged)."""
    base = {
        "run_id": RUN_ID,
        "status": "completed",
        "error": "",
        "vm": "vm0",
        "source": "labsrc",
        "destination": "labdst",
        "client": "labclient",
        "uri": "tcp:10.10.1.2:4444",
        "protocol": "qmp",
        "already_migrated": False,
        "started": "2026-11-25T22:02:18.913225Z",
        "qemu": {
            "status": "completed",
            "total_time_ms": 474,
            "downtime_ms": 37,
            "setup_time_ms": 1,
            "transferred_bytes": 110140115,
            "throughput_mbps": 1865.79,
            "dirty_sync_count": 3,
        },
        "timeline": [
            {"t": 0.1, "status": "active", "transferred": 26301245, "remaining": 252960768},
            {"t": 0.47, "status": "completed", "transferred": 110140115, "remaining": 0},
        ],
        "events": [{"t": 0.0003, "event": "MIGRATION", "data": {"status": "setup"}}],
        "heartbeat": {"continues": True, "missed": 1},
        "verification": {
            "migration_completed": True,
            "destination_running": True,
            "guest_answers_ping": None,
        },
    }
    return {**base, **changes}


def published(rec: dict[str, Any]) -> dict[str, Any]:
    """What the role's set_stats publishes: the record without timeline and events."""
    return {key: value for key, value in rec.items() if key not in ("timeline", "events")}


class Events:
    """Job events as ansible-runner's event_handler receives them, numbered in order."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, kind: str, stdout: str = "", **data: Any) -> Events:
        self.items.append(
            {"event": kind, "counter": len(self.items) + 1, "stdout": stdout, "event_data": data}
        )
        return self

    def ok(self, task: str, host: str, res: dict[str, Any], **data: Any) -> Events:
        return self.add("runner_on_ok", task=task, host=host, res=res, **data)

    def failed(self, task: str, host: str, res: dict[str, Any], **data: Any) -> Events:
        data.setdefault("ignore_errors", None)
        return self.add("runner_on_failed", task=task, host=host, res=res, **data)

    def unreachable(self, task: str, host: str, msg: str) -> Events:
        res = {"unreachable": True, "msg": msg, "changed": False}
        return self.add("runner_on_unreachable", task=task, host=host, res=res)

    def recap(
        self,
        failures: dict[str, int] | None = None,
        dark: dict[str, int] | None = None,
        rescued: dict[str, int] | None = None,
        artifact_data: dict[str, Any] | None = None,
    ) -> Events:
        return self.add(
            "playbook_on_stats",
            changed={},
            dark=dark or {},
            failures=failures or {},
            ok={},
            rescued=rescued or {},
            artifact_data=artifact_data or {},
        )


def fact_event(events: Events, rec: dict[str, Any]) -> Events:
    return events.ok(
        "Assemble the run's record",
        "labsrc",
        {"ansible_facts": {"migration_result": rec}},
        role="migration",
        task_action="ansible.builtin.set_fact",
    )


def raised(events: Events) -> PlaybookFailed:
    with pytest.raises(PlaybookFailed) as caught:
        raise_for_failure(
            events.items, playbook="migrate.yml", status="failed", rc=2, prefixes=PREFIXES
        )
    return caught.value


# -- reading runs from events ---------------------------------------------------------


def test_published_run_prefers_the_set_stats_data(tmp_path):
    path = tmp_path / RUN_ID / "run.json"
    events = fact_event(Events(), record(status="from-fact")).recap(
        artifact_data={"qmigrate_run": published(record()), "qmigrate_run_json": str(path)}
    )

    rec, where = published_run(events.items)

    assert rec["status"] == "completed"
    assert "timeline" not in rec
    assert where == path


def test_published_run_falls_back_to_the_record_fact_and_the_copy_dest():
    events = fact_event(Events(), record()).ok(
        "Write run.json",
        "labsrc",
        {"dest": f"/work/results/{RUN_ID}/run.json", "changed": True},
    )
    events.recap()

    rec, where = published_run(events.items)

    assert rec["run_id"] == RUN_ID
    assert rec["timeline"]
    assert where == Path(f"/work/results/{RUN_ID}/run.json")


def test_published_run_is_none_without_a_record():
    events = Events().ok("Connect to the host", "labsrc", {"ping": "pong"}).recap()

    assert published_run(events.items) is None


def test_failure_skips_rescued_failures():
    events = (
        Events()
        .failed("Migrate the VM and record its progress", "labsrc", {"msg": "inner"})
        .failed("Fail with the cause", "labsrc", {"msg": "Migration of vm0 failed: inner"})
        .recap(failures={"labsrc": 1}, rescued={"labsrc": 1})
    )

    found = failure(events.items)

    assert found is not None
    assert (found.task, found.host) == ("Fail with the cause", "labsrc")
    assert found.message == "Migration of vm0 failed: inner"


def test_failure_is_the_earliest_of_the_failed_hosts_and_ignores_the_rest():
    events = (
        Events()
        .failed("Probe", "labclient", {"msg": "ignored"}, ignore_errors=True)
        .failed("Rescued", "labsrc", {"msg": "rescued"})
        .failed("Start the VM", "labdst", {"msg": "no QEMU"})
        .failed("Later", "labsrc", {"msg": "later"})
        .recap(failures={"labdst": 1, "labsrc": 1}, rescued={"labsrc": 1})
    )

    found = failure(events.items)

    assert found is not None
    assert (found.task, found.host, found.message) == ("Start the VM", "labdst", "no QEMU")


def test_failure_message_carries_a_failed_items_message_and_stderr():
    res = {
        "msg": "One or more items failed",
        "results": [{"failed": False}, {"failed": True, "msg": "non-zero return code"}],
        "stderr": "ip: command not found",
    }
    events = Events().failed("Loop", "labsrc", res).recap(failures={"labsrc": 1})

    found = failure(events.items)

    assert found is not None
    assert found.message == (
        "One or more items failed: non-zero return code: ip: command not found"
    )


# -- exceptions -----------------------------------------------------------------------


def test_unreachable_host_is_an_infrastructure_error():
    events = (
        Events()
        .unreachable("Connect to the host", "labsrc", "Failed to connect to the host via ssh")
        .recap(dark={"labsrc": 1})
    )

    error = raised(events)

    assert isinstance(error, InfrastructureError)
    assert (error.task, error.host) == ("Connect to the host", "labsrc")
    assert "Failed to connect" in error.message


def test_argument_spec_failure_is_bad_input_naming_the_variable():
    res = {
        "msg": "Validation of arguments failed:\nargument 'migration_max_bandwidth' is of type "
        "str and we were unable to convert to int",
        "argument_errors": [
            "argument 'migration_max_bandwidth' is of type str and we were unable to convert"
        ],
        "argument_spec_data": {
            "migration_max_bandwidth": {"type": "int"},
            "migration_max": {"type": "int"},
            "migration_vm": {"type": "str"},
        },
    }
    events = (
        Events()
        .failed(
            "Validating arguments against arg spec 'main' - Live-migrate a VM",
            "labsrc",
            res,
            task_action="ansible.builtin.validate_argument_spec",
        )
        .recap(failures={"labsrc": 1})
    )

    error = raised(events)

    assert type(error) is BadInput
    assert error.variables == ("migration_max_bandwidth",)
    assert "migration_max_bandwidth" in str(error)


def test_the_check_of_every_input_is_bad_input_naming_each_variable():
    res = {
        "msg": "Refused before anything changed: migration_port: 70000 is out of range; "
        "migration_uri: 'exec:touch /tmp/x': ...",
        "invalid": [
            {"variable": "migration_port", "problem": "70000 is out of range", "hosts": []},
            {"variable": "migration_uri", "problem": "'exec:touch /tmp/x': ...", "hosts": []},
        ],
    }
    events = (
        Events()
        .failed(
            "Check the variables of every host and the extra vars",
            "localhost",
            res,
            task_action="qmigrate_inputs",
        )
        .recap(failures={"localhost": 1})
    )

    error = raised(events)

    assert type(error) is BadInput
    assert error.variables == ("migration_port", "migration_uri")


def test_failed_migration_carries_the_record_read_from_run_json(tmp_path):
    path = tmp_path / RUN_ID / "run.json"
    path.parent.mkdir()
    failed_record = record(
        status="failed", error="capabilities: warp-drive not supported", verification={}
    )
    path.write_text(json.dumps(failed_record))
    message = "Migration of vm0 from labsrc to labdst failed: capabilities: warp-drive ..."
    events = (
        fact_event(Events(), failed_record)
        .failed("Fail with the cause", "labsrc", {"msg": message}, role="migration")
        .recap(
            failures={"labsrc": 1},
            rescued={"labsrc": 1},
            artifact_data={
                "qmigrate_run": published(failed_record),
                "qmigrate_run_json": str(path),
            },
        )
    )

    error = raised(events)

    assert isinstance(error, MigrationFailed)
    assert error.result is not None
    assert error.result.status == "failed"
    assert error.result.error.startswith("capabilities: warp-drive")
    assert error.result.record_path == path.resolve()
    assert error.result.record["timeline"] == failed_record["timeline"]
    assert error.result.verified is None


def test_failed_verification_after_the_record_is_a_failed_migration():
    rec = record(verification={"migration_completed": True, "heartbeat_without_gap": False})
    events = (
        fact_event(Events(), rec)
        .failed(
            "Check every verification",
            "labsrc",
            {"msg": "Verification failed for x: heartbeat_without_gap"},
            task_action="ansible.builtin.assert",
        )
        .recap(failures={"labsrc": 1}, artifact_data={"qmigrate_run": published(rec)})
    )

    error = raised(events)

    assert isinstance(error, MigrationFailed)
    assert error.result is not None
    assert error.result.verified is False
    assert error.result.record_path is None


def test_failure_after_a_record_of_success_is_not_a_failed_migration():
    events = (
        fact_event(Events(), record())
        .failed("Write run.json", "labsrc", {"msg": "No space left on device"})
        .recap(failures={"labsrc": 1})
    )

    error = raised(events)

    assert type(error) is PlaybookFailed
    assert error.task == "Write run.json"


def test_assert_naming_a_variable_is_bad_input():
    message = "qmigrate_source (labsrc) and qmigrate_destination (labsrc) must be two hosts"
    events = (
        Events()
        .failed(
            "Check the source and destination hosts",
            "labsrc",
            {"msg": message},
            task_action="ansible.builtin.assert",
        )
        .recap(failures={"labsrc": 1})
    )

    error = raised(events)

    assert type(error) is BadInput
    assert error.variables == ("qmigrate_source", "qmigrate_destination")


def test_assert_naming_no_variable_and_other_failures_are_playbook_failures():
    events = (
        Events()
        .failed(
            "Check the platform",
            "labsrc",
            {"msg": "The qemu role supports Debian and Ubuntu on x86_64"},
            task_action="ansible.builtin.assert",
        )
        .recap(failures={"labsrc": 1})
    )

    error = raised(events)

    assert type(error) is PlaybookFailed
    assert error.message == "The qemu role supports Debian and Ubuntu on x86_64"


def test_run_without_a_failed_task_reports_ansibles_errors():
    events = Events().add(
        "verbose", stdout="\x1b[0;31m[ERROR]: the playbook: missing.yml could not be found\x1b[0m"
    )

    error = raised(events)

    assert type(error) is PlaybookFailed
    assert error.task == ""
    assert "the playbook: missing.yml could not be found" in error.message
    assert "rc 2" in error.message


def test_run_that_never_started_reports_its_last_words():
    events = Events().add("verbose", stdout="The command was not found or was not executable: x.")

    error = raised(events)

    assert error.message.endswith(": The command was not found or was not executable: x.")


def test_named_variables_in_a_message_need_a_project_prefix():
    events = Events().failed(
        "Check", "labsrc", {"msg": "lab_subnet overlaps; __lab_overlaps, subnet_mask, vm0"}
    )
    found = failure(events.items)
    assert found is not None

    assert named_variables(found, PREFIXES) == ("lab_subnet",)


# -- API helpers ----------------------------------------------------------------------


def test_migration_vars_map_the_options_and_keep_other_extra_vars():
    extravars = api.migration_vars(
        reverse=True,
        max_bandwidth=20_000_000,
        downtime_limit=100,
        capabilities={"multifd": True},
        parameters={"multifd-channels": 4},
        postcopy=True,
        timeout=30.0,
        extra_vars={"migration_vm": "vm1", "migration_max_bandwidth": 20_000_000},
    )

    assert extravars == {
        "migration_vm": "vm1",
        "qmigrate_reverse": True,
        "migration_max_bandwidth": 20_000_000,
        "migration_downtime_limit": 100,
        "migration_capabilities": {"multifd": True},
        "migration_parameters": {"multifd-channels": 4},
        "migration_postcopy": True,
        "migration_timeout": 30.0,
    }


def test_migration_vars_leave_unset_options_to_the_extra_vars():
    extravars = api.migration_vars(extra_vars={"qmigrate_reverse": True})

    assert extravars == {"qmigrate_reverse": True}


def test_an_option_contradicting_the_extra_vars_is_bad_input():
    with pytest.raises(BadInput) as caught:
        api.migration_vars(max_bandwidth=1, extra_vars={"migration_max_bandwidth": 2})

    assert caught.value.variables == ("migration_max_bandwidth",)


def test_migration_result_from_a_record(tmp_path):
    result = MigrationResult.from_record(record(), tmp_path / "run.json")

    assert (result.run_id, result.status, result.source, result.destination) == (
        RUN_ID,
        "completed",
        "labsrc",
        "labdst",
    )
    assert (result.total_time_ms, result.downtime_ms, result.setup_time_ms) == (474, 37, 1)
    assert (result.transferred_bytes, result.dirty_sync_count) == (110140115, 3)
    assert result.verified is True  # guest_answers_ping: None is "not checked"
    assert result.to_dict()["record_path"] == str(tmp_path / "run.json")


# -- the command line -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("5", 5),
        ("2.5", 2.5),
        ("on", True),
        ("OFF", False),
        ("true", True),
        ("lots", "lots"),
        ('"5"', "5"),
        ("[1, 2]", [1, 2]),
        ("zstd", "zstd"),
    ],
)
def test_parse_value(text, value):
    assert cli.parse_value(text) == value
    assert type(cli.parse_value(text)) is type(value)


@pytest.fixture
def calls(monkeypatch):
    """The API functions replaced by recorders returning what a test puts in RETURNS."""
    recorded: dict[str, Any] = {}
    returns: dict[str, Any] = {}

    def recorder(name: str):
        def call(*args, **kwargs):
            recorded[name] = kwargs
            outcome = returns.get(name)
            if isinstance(outcome, BaseException):
                raise outcome
            if callable(outcome):
                return outcome(**kwargs)
            return outcome

        return call

    for name in ("lab_up", "lab_down", "provision", "migrate", "lab_status"):
        monkeypatch.setattr(api, name, recorder(name))
    return recorded, returns


def completed_result(tmp_path: Path) -> MigrationResult:
    return MigrationResult.from_record(record(), tmp_path / "run.json")


def test_migrate_flags_become_typed_options(calls, tmp_path, capsys):
    recorded, returns = calls
    returns["migrate"] = completed_result(tmp_path)

    code = cli.main(
        [
            "migrate",
            "--reverse",
            "--max-bandwidth",
            "20000000",
            "--downtime-limit",
            "100",
            "--capability",
            "multifd=on",
            "--capability",
            "xbzrle=off",
            "--parameter",
            "multifd-channels=4",
            "--parameter",
            "multifd-compression=zstd",
            "--postcopy",
            "--timeout",
            "30",
            "-e",
            "migration_vm=vm0",
            "-e",
            '{"a": 1, "b": [1]}',
            "-i",
            "inventory/cloudlab",
        ]
    )

    options = recorded["migrate"]
    assert code == 0
    assert options["reverse"] is True
    assert options["max_bandwidth"] == 20_000_000
    assert options["downtime_limit"] == 100
    assert options["capabilities"] == {"multifd": True, "xbzrle": False}
    assert options["parameters"] == {"multifd-channels": 4, "multifd-compression": "zstd"}
    assert options["postcopy"] is True
    assert options["timeout"] == 30.0
    assert options["extra_vars"] == {"migration_vm": "vm0", "a": 1, "b": [1]}
    assert options["inventory"] == "inventory/cloudlab"
    assert options["on_progress"] is None  # not a terminal
    assert "downtime      37 ms" in capsys.readouterr().out


def test_migrate_without_flags_leaves_everything_to_the_playbook(calls, tmp_path):
    recorded, returns = calls
    returns["migrate"] = completed_result(tmp_path)

    assert cli.main(["migrate"]) == 0

    options = recorded["migrate"]
    assert options["capabilities"] is None
    assert options["parameters"] is None
    assert options["max_bandwidth"] is None
    assert options["reverse"] is False
    assert options["extra_vars"] == {}


def test_json_and_project_are_accepted_after_the_subcommand(calls, tmp_path, capsys):
    recorded, returns = calls
    returns["migrate"] = completed_result(tmp_path)

    assert cli.main(["migrate", "--json", "--project", str(tmp_path)]) == 0

    assert recorded["migrate"]["project"] == str(tmp_path)
    document = json.loads(capsys.readouterr().out)
    assert document["run_id"] == RUN_ID
    assert document["record"]["timeline"]


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["migrate", "--capability", "multifd=maybe"], "must be on or off"),
        (["migrate", "--capability", "multifd"], "is not NAME=VALUE"),
        (["migrate", "--parameter", "=4"], "is not NAME=VALUE"),
        (["migrate", "-e", "not a var=1"], "is not a variable name"),
        (["migrate", "-e", "{not json"], "invalid JSON"),
        (["migrate", "-e", "[1, 2]"], "is not NAME=VALUE"),
        (["migrate", "--max-bandwidth", "lots"], "'lots' is not a whole number"),
        (["migrate", "--max-bandwidth", "-1"], "'-1' must not be negative"),
        (["migrate", "--downtime-limit", "1.5"], "'1.5' is not a whole number"),
        (["migrate", "--timeout", "-1"], "must be a positive, finite number of seconds"),
        (["migrate", "--timeout", "0"], "must be a positive, finite number of seconds"),
        (["migrate", "--timeout", "inf"], "must be a positive, finite number of seconds"),
        (["migrate", "--timeout", "soon"], "'soon' is not a number of seconds"),
        (["lab", "sideways"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2(calls, capsys, argv, complaint):
    recorded, _ = calls

    code = cli.main(argv)

    assert code == cli.EXIT_BAD_INPUT
    assert complaint in capsys.readouterr().err
    assert recorded == {}


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (MigrationFailed("Fail with the cause", "labsrc", "migration failed"), 1),
        (BadInput("Validating", "labsrc", "bad", variables=("migration_timeout",)), 2),
        (InfrastructureError("Connect", "labsrc", "unreachable"), 3),
        (PlaybookFailed("Start the VM", "labsrc", "no QEMU"), 3),
    ],
)
def test_exit_codes(calls, capsys, error, code):
    _, returns = calls
    returns["migrate"] = error

    assert cli.main(["migrate"]) == code

    err = capsys.readouterr().err
    assert error.message in err
    assert f"task {error.task!r} on labsrc" in err


def test_failed_migration_shows_its_record_and_json_describes_the_error(calls, tmp_path, capsys):
    _, returns = calls
    result = MigrationResult.from_record(
        record(status="failed", error="warp-drive not supported"), tmp_path / "run.json"
    )
    returns["migrate"] = MigrationFailed("Fail with the cause", "labsrc", "cause", result=result)

    assert cli.main(["migrate"]) == 1
    human = capsys.readouterr().out
    assert cli.main(["--json", "migrate"]) == 1
    document = json.loads(capsys.readouterr().out)

    assert "error         warp-drive not supported" in human
    assert document["exit_code"] == 1
    assert document["error"]["kind"] == "MigrationFailed"
    assert document["error"]["result"]["status"] == "failed"


def test_lab_commands_run_their_playbook_and_report_changes(calls, tmp_path, capsys):
    recorded, returns = calls

    stats = Events().add("playbook_on_stats", changed={"labsrc": 2, "localhost": 5})
    for name in ("lab_up", "lab_down", "provision"):
        returns[name] = PlaybookRun(name, "successful", 0, stats.items, tmp_path)

    assert cli.main(["lab", "up", "-e", "lab_subnet=10.10.9.0/24"]) == 0
    assert cli.main(["lab", "down"]) == 0
    assert cli.main(["provision", "-i", "inv"]) == 0

    assert recorded["lab_up"]["extra_vars"] == {"lab_subnet": "10.10.9.0/24"}
    assert recorded["provision"]["inventory"] == "inv"
    out = capsys.readouterr().out
    assert "lab up: successful; changed: labsrc 2, localhost 5" in out
    assert "lab down: successful" in out


def test_lab_status_output(calls, tmp_path, capsys):
    _, returns = calls
    returns["lab_status"] = api.LabStatus(
        tmp_path, {"lablan": True, "labsrc": True, "labdst": False}, {"labsrc": "running"}
    )

    assert cli.main(["lab", "status"]) == 0

    out = capsys.readouterr().out
    assert out.startswith("lab partly up")
    assert "namespace labdst       absent" in out
    assert "vm on     labsrc       running" in out


def test_lab_status_output_without_a_lab(calls, tmp_path, capsys):
    _, returns = calls
    returns["lab_status"] = api.LabStatus(tmp_path, {}, {})

    assert cli.main(["lab", "status", "-i", "inventory/cloudlab"]) == 0

    assert capsys.readouterr().out == f"{tmp_path}: no embedded lab in this inventory\n"


@pytest.fixture
def results_dir(tmp_path):
    """Two recorded runs, the latest link, and a run interrupted before its record."""
    first = record(run_id="20260101T000000Z-vm0-labsrc-to-labdst", started="2026-01-01T00:00")
    second = record(
        run_id="20260102T000000Z-vm0-labdst-to-labsrc",
        started="2026-01-02T00:00",
        source="labdst",
        destination="labsrc",
        status="failed",
        error="timed out",
        qemu={"total_time_ms": 3026, "transferred_bytes": 12_500_000},
        verification={},
    )
    for rec in (second, first):
        (tmp_path / rec["run_id"]).mkdir()
        (tmp_path / rec["run_id"] / "run.json").write_text(json.dumps(rec))
    (tmp_path / "latest").symlink_to(second["run_id"])
    (tmp_path / "20260103T000000Z-vm0-labsrc-to-labdst").mkdir()
    return tmp_path


def test_runs_table(results_dir, capsys):
    assert cli.main(["runs", "--results", str(results_dir)]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "RUN",
        "STATUS",
        "ROUTE",
        "TOTAL",
        "ms",
        "DOWN",
        "ms",
        "MiB",
        "Mbit/s",
        "VERIFIED",
    ]
    assert len(lines) == 3
    assert lines[1].split() == [
        "20260101T000000Z-vm0-labsrc-to-labdst",
        "completed",
        "labsrc->labdst",
        "474",
        "37",
        "105.0",
        "1865.8",
        "yes",
    ]
    assert lines[2].split() == [
        "20260102T000000Z-vm0-labdst-to-labsrc",
        "failed",
        "labdst->labsrc",
        "3026",
        "-",
        "11.9",
        "-",
        "-",
    ]


def test_runs_json(results_dir, capsys):
    assert cli.main(["--json", "runs", "--results", str(results_dir)]) == 0

    document = json.loads(capsys.readouterr().out)
    assert [run["status"] for run in document] == ["completed", "failed"]
    assert document[1]["record_path"].endswith("20260102T000000Z-vm0-labdst-to-labsrc/run.json")


def test_runs_table_without_runs(tmp_path):
    assert runs_table(api.runs(tmp_path / "none")) == "no runs recorded"


def test_report_latest_and_by_id(results_dir, capsys):
    assert cli.main(["report", "--results", str(results_dir)]) == 0
    latest = capsys.readouterr().out
    run_id = "20260101T000000Z-vm0-labsrc-to-labdst"
    assert cli.main(["--json", "report", run_id, "--results", str(results_dir)]) == 0
    by_id = json.loads(capsys.readouterr().out)

    assert "run           20260102T000000Z-vm0-labdst-to-labsrc" in latest
    assert "error         timed out" in latest
    assert by_id == record(run_id=run_id, started="2026-01-01T00:00")


def test_report_of_an_unknown_run_is_bad_input(results_dir, capsys):
    assert cli.main(["report", "nope", "--results", str(results_dir)]) == 2

    assert "no run 'nope'" in capsys.readouterr().err


HELP_FLAGS = [
    ([], ["lab", "provision", "migrate", "report", "runs", "--json", "--project", "exit status"]),
    (["lab"], ["up", "down", "status"]),
    (["lab", "up"], ["--inventory", "--extra-vars", "--json", "--project"]),
    (["lab", "down"], ["--inventory", "--extra-vars"]),
    (["lab", "status"], ["--inventory", "--json"]),
    (["provision"], ["--inventory", "--extra-vars"]),
    (
        ["migrate"],
        [
            "--reverse",
            "--max-bandwidth BYTES",
            "--downtime-limit MS",
            "--capability NAME=on|off",
            "--parameter NAME=VALUE",
            "--postcopy",
            "--timeout S",
            "--extra-vars",
            "--inventory",
            "--json",
        ],
    ),
    (["report"], ["RUN", "latest", "--results", "--json"]),
    (["runs"], ["--results", "--json"]),
]


@pytest.mark.parametrize(("argv", "flags"), HELP_FLAGS)
def test_help_of_every_command_names_its_flags(capsys, argv, flags):
    assert cli.main([*argv, "--help"]) == 0

    out = capsys.readouterr().out
    assert out.startswith(f"usage: qmigrate {' '.join(argv)}".rstrip())
    for flag in flags:
        assert flag in out


def test_lab_status_help_offers_no_extra_vars(capsys):
    cli.main(["lab", "status", "--help"])

    assert "--extra-vars" not in capsys.readouterr().out


# -- progress -------------------------------------------------------------------------


def test_progress_line():
    point = {
        "status": "active",
        "transferred": 140 * MIB,
        "remaining": 134 * MIB,
        "total": 268 * MIB,
        "mbps": 2311.0,
    }

    assert progress_line(point, width=10) == (
        "[#####.....]  50%  active  140/268 MiB sent, 134 MiB left  2.3 Gbit/s"
    )


def test_progress_line_before_figures_and_when_done():
    early = progress_line({"status": "setup"}, width=4)
    done = progress_line(
        {"status": "completed", "transferred": 1, "remaining": 5, "total": 10, "mbps": 160.4},
        width=4,
    )

    assert early == "[....]   0%  setup  ?/? MiB sent, ? MiB left  ? Mbit/s"
    assert done.startswith("[####] 100%  completed")
    assert done.endswith("160 Mbit/s")


def test_progress_line_never_shows_100_percent_before_the_end():
    point = {"status": "active", "transferred": 9, "remaining": 1, "total": 1000, "mbps": 1}

    assert progress_line(point, width=10).startswith("[#########.]  99%")


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_migrate_on_a_terminal_draws_the_bar_then_the_summary(calls, tmp_path, monkeypatch):
    _, returns = calls
    terminal = TTY()
    monkeypatch.setattr("sys.stdout", terminal)

    def migrate(on_progress, on_task, **_):
        on_task("migration : Migrate the VM and record its progress")
        for remaining in (200, 100):
            on_progress({"status": "active", "remaining": remaining * MIB, "total": 400 * MIB})
        return completed_result(tmp_path)

    returns["migrate"] = migrate

    assert cli.main(["migrate"]) == 0

    out = terminal.getvalue()
    assert "\rmigrate: migration : Migrate the VM" in out
    first, second = out.index(" 50%"), out.index(" 75%")
    assert first < second < out.index("\nrun           " + RUN_ID)


def test_status_line_writes_nothing_off_a_terminal():
    stream = io.StringIO()
    line = StatusLine(stream, enabled=False)

    line.show("[###] 100%")
    line.keep()

    assert stream.getvalue() == ""


class FakeHMP:
    """An HMP monitor on a real UNIX socket: banner, prompt, and for each `info migrate`
    the next of REPLIES (the last one repeated)."""

    def __init__(self, path: Path, replies: list[str]) -> None:
        self.replies = replies
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(1)
        self.listener.settimeout(5)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"QEMU 7.2.22 monitor - type 'help' for more information\r\n(qemu) ")
            for index, line in enumerate(lines):
                assert line.strip() == b"info migrate"
                reply = self.replies[min(index, len(self.replies) - 1)]
                conn.sendall(b"info migrate\r\n" + reply.encode() + b"\r\n(qemu) ")

    def close(self) -> None:
        self.listener.close()


def info_migrate(status: str, remaining_kib: int = 0) -> str:
    return (
        f"Migration status: {status}\r\ntransferred ram: 1024 kbytes\r\n"
        f"remaining ram: {remaining_kib} kbytes\r\ntotal ram: 262144 kbytes\r\n"
        "throughput: 160.00 mbps"
    )


@pytest.fixture
def tools():
    return monitor_tools(ROOT)


def test_watch_reports_this_migration_only(tools, tmp_path):
    server = FakeHMP(
        tmp_path / "monitor.sock",
        [
            info_migrate("completed"),  # the migration that brought the VM here
            "",  # none yet: `info migrate` prints nothing
            info_migrate("active", 131072),
            info_migrate("completed"),
        ],
    )
    watch = MigrationWatch(tools, tmp_path / "monitor.sock", timeout=2)

    points = [watch.poll() for _ in range(4)]
    watch.close()
    server.close()

    assert points[:2] == [None, None]
    assert points[2] is not None and points[3] is not None
    assert (points[2]["status"], points[2]["remaining"]) == ("active", 128 * MIB)
    assert (points[2]["total"], points[2]["mbps"]) == (256 * MIB, 160.0)
    assert points[3]["status"] == "completed"


def test_watch_without_a_socket_reports_nothing(tools, tmp_path):
    watch = MigrationWatch(tools, tmp_path / "absent.sock", timeout=0.2)

    assert watch.poll() is None


def test_reporter_polls_once_the_source_is_known_and_ends_on_the_last_point():
    shown: list[dict] = []
    sources: list[str] = []

    class Watch:
        def poll(self):
            return {"status": "active"}

        def close(self):
            sources.append("closed")

    def factory(source):
        sources.append(source)
        return Watch()

    reporter = ProgressReporter(shown.append, factory)

    reporter.tick()
    reporter.source_known("labdst")
    reporter.source_known("labsrc")
    reporter.tick()
    reporter.finish({"status": "completed"})

    assert sources == ["labdst", "closed"]
    assert shown == [{"status": "active"}, {"status": "completed"}]


def test_reporter_that_showed_nothing_adds_no_final_point():
    shown: list[dict] = []
    reporter = ProgressReporter(shown.append, lambda source: pytest.fail("never polled"))

    reporter.finish({"status": "completed"})

    assert shown == []
