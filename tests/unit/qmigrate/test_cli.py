"""The qmigrate command (src/qmigrate/cli.py) with the API replaced by recorders: its
arguments, exit codes, output, and the progress bar on a terminal."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from qmigrate import api, campaign_runner, cli
from qmigrate.errors import BadInput, InfrastructureError, MigrationFailed, PlaybookFailed
from qmigrate.results import MigrationResult
from qmigrate.runner import PlaybookRun
from tests import ROOT
from tests.unit.qmigrate.records import RUN_ID, Events, record

MIB = 1024 * 1024


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


# -- qmigrate campaign check --------------------------------------------------------------


@pytest.mark.parametrize(
    "shipped", sorted((ROOT / "campaigns").glob("*.yml")), ids=lambda p: p.stem
)
def test_every_shipped_campaign_checks_and_plans(shipped, capsys):
    assert cli.main(["--json", "campaign", "check", str(shipped)]) == cli.EXIT_OK

    document = json.loads(capsys.readouterr().out)
    ids = [run["run_id"] for run in document["runs"]]
    assert document["name"] == shipped.stem and ids and len(set(ids)) == len(ids)
    assert [run["number"] for run in document["runs"]] == list(range(1, len(ids) + 1))


def test_campaign_check_shows_the_plan(tmp_path, capsys):
    path = tmp_path / "two.yml"
    path.write_text("methods: {a: {}, b: {multifd_channels: 2}}\nguests: {idle: {}}\n")

    assert cli.main(["campaign", "check", str(path)]) == cli.EXIT_OK

    out = capsys.readouterr().out
    assert out.splitlines()[0] == "campaign two: 2 runs, one-way, probes off, baseline a"
    assert "     1  idle-a-001" in out and "     2  idle-b-001" in out


def test_a_bad_campaign_exits_2_naming_every_problem(tmp_path, capsys):
    path = tmp_path / "bad.yml"
    path.write_text("repetitions: 0\nmethods: {m: {postcopy: maybe}}\nguests: {g: {}}\n")

    assert cli.main(["campaign", "check", str(path)]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "repetitions: 0 is out of range" in err
    assert "methods.m.postcopy: 'maybe' is not true or false" in err

    assert cli.main(["--json", "campaign", "check", str(path)]) == cli.EXIT_BAD_INPUT
    document = json.loads(capsys.readouterr().out)
    assert document["error"]["kind"] == "CampaignError" and len(document["error"]["problems"]) == 2


def test_a_reader_that_goes_away_ends_the_command_quietly():
    # `qmigrate campaign check ... | head -1`: the reader closed its end before the
    # command wrote; no traceback, and the shell's code for it
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "qmigrate", "campaign", "check", "campaigns/compare.yml"],
            cwd=ROOT,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write)

    assert done.returncode == cli.EXIT_BROKEN_PIPE, done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


def test_campaign_run_refuses_an_extra_variable_the_campaign_sets(tmp_path, capsys):
    path = tmp_path / "two.yml"
    path.write_text("timeout: 60\nmethods: {a: {}}\nguests: {idle: {memory: 262148K}}\n")
    into = tmp_path / "into"

    code = cli.main(
        ["campaign", "run", str(path), "--into", str(into), "-e", "migration_timeout=5"]
    )

    assert code == cli.EXIT_BAD_INPUT
    assert "extra variables migration_timeout: the campaign sets it itself" in (
        capsys.readouterr().err
    )
    assert not into.exists()


def test_campaign_run_passes_extra_variables_and_the_inventory_on(tmp_path, monkeypatch):
    path = tmp_path / "two.yml"
    path.write_text("methods: {a: {}}\nguests: {idle: {}}\n")
    seen = {}

    def run_campaign(planned, **kwargs):
        seen.update(kwargs)
        (tmp_path / "summary.md").write_text("summary\n")
        return campaign_runner.CampaignOutcome(tmp_path)

    monkeypatch.setattr(campaign_runner, "run_campaign", run_campaign)

    code = cli.main(["campaign", "run", str(path), "-i", "hosts.yml", "-e", 'vm_extra_args=["-S"]'])

    assert code == cli.EXIT_OK
    assert seen["extra_vars"] == {"vm_extra_args": ["-S"]}
    assert seen["inventory"] == "hosts.yml"
