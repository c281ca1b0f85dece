"""The ``qmigrate`` command: the lab, provisioning, migrations and their records, from a
terminal or a script (``--json``). A thin layer over qmigrate.api."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from qmigrate import __version__, api, campaign, campaign_runner
from qmigrate.campaign import CampaignError
from qmigrate.display import (
    StatusLine,
    lab_status_text,
    progress_line,
    runs_table,
    summary_table,
)
from qmigrate.errors import BadInput, MigrationFailed, PlaybookFailed, QmigrateError
from qmigrate.runner import PlaybookRun

EXIT_OK = 0
EXIT_MIGRATION_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INFRASTRUCTURE = 3
EXIT_INTERRUPTED = 130
# What a shell reports for a command that wrote to a pipe nobody reads (128 + SIGPIPE)
EXIT_BROKEN_PIPE = 141

_BOOLEANS = {"on": True, "true": True, "off": False, "false": False}
_JSON_HELP = "machine output: one JSON document on stdout, no progress display"
_PROJECT_HELP = (
    "the qmigrate checkout (default: the one this command is installed from, else the "
    "current directory)"
)

DESCRIPTION = """\
Live-migration studies of QEMU/KVM virtual machines. Runs the project's playbooks through
ansible-runner: build the embedded lab, provision it, migrate vm0 and verify it, and read
the records of past runs (results/<run id>/run.json)."""

EPILOG = """\
examples:
  qmigrate lab up && qmigrate provision
  qmigrate migrate --max-bandwidth 20000000 --capability multifd=on --parameter multifd-channels=4
  qmigrate migrate --reverse            # back to the first host (round trips)
  qmigrate --json report latest         # the whole run.json of the newest run
  qmigrate runs

exit status:
  0  success
  1  the migration failed or failed verification (its run.json records why)
  2  bad input: an argument or a variable was refused before anything changed
  3  infrastructure error: a host was unreachable, or another playbook step failed
  130  interrupted (Ctrl-C, SIGTERM); 141  its output's reader went away"""


# -- argument types -------------------------------------------------------------------


def parse_value(text: str) -> Any:
    """A command-line value: on/off/true/false as booleans, then JSON (5 -> int, 2.5 ->
    float, "5" -> string, [1, 2] -> list), else the text itself as a string."""
    if text.lower() in _BOOLEANS:
        return _BOOLEANS[text.lower()]
    try:
        return json.loads(text)
    except ValueError:
        return text


def _name_and_value(text: str, what: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{what} {text!r} is not NAME=VALUE")
    return name.strip(), value


def extra_vars(text: str) -> dict[str, Any]:
    """-e: a JSON object, or KEY=VALUE with VALUE read as by parse_value."""
    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"extra vars {text!r}: invalid JSON: {err}") from None
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError(f"extra vars {text!r}: not a JSON object")
        return value
    name, value = _name_and_value(text, "extra var")
    if not name.isidentifier():
        raise argparse.ArgumentTypeError(f"extra var {text!r}: {name!r} is not a variable name")
    return {name: parse_value(value)}


def seconds(text: str) -> float:
    """--timeout: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive, finite number of seconds")
    return value


def count(text: str) -> int:
    """--max-bandwidth, --downtime-limit: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def capability(text: str) -> tuple[str, bool]:
    """--capability NAME=on|off."""
    name, value = _name_and_value(text, "capability")
    if value.lower() not in _BOOLEANS:
        raise argparse.ArgumentTypeError(f"capability {text!r}: the value must be on or off")
    return name, _BOOLEANS[value.lower()]


def parameter(text: str) -> tuple[str, Any]:
    """--parameter NAME=VALUE, VALUE read as by parse_value."""
    name, value = _name_and_value(text, "parameter")
    return name, parse_value(value)


# -- the parser -----------------------------------------------------------------------


def _common_options() -> argparse.ArgumentParser:
    """--json and --project, accepted before or after the subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help=_JSON_HELP,
    )
    common.add_argument(
        "--project",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help=_PROJECT_HELP,
    )
    return common


def _playbook_options(extra: bool = True) -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "-i",
        "--inventory",
        metavar="PATH",
        help="inventory to use (default: the project's inventory/lab, the embedded lab)",
    )
    if extra:
        options.add_argument(
            "-e",
            "--extra-vars",
            metavar="KEY=VALUE|JSON",
            type=extra_vars,
            action="append",
            default=[],
            help=(
                "set a playbook variable (repeatable): KEY=VALUE, VALUE read as JSON when it "
                "parses (5, true, [1,2], '\"5\"' for a string) and on/off as booleans; or a "
                "JSON object of several"
            ),
        )
    return options


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="qmigrate",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help=_JSON_HELP)
    parser.add_argument("--project", metavar="DIR", help=_PROJECT_HELP)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    lab = commands.add_parser(
        "lab",
        help="build, remove or inspect the embedded lab",
        description="Build, remove or inspect the embedded lab (network namespaces on this "
        "machine standing in for Cloudlab's nodes).",
        parents=[common],
    )
    lab_actions = lab.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = lab_actions.add_parser(
        "up",
        help="build the lab (playbooks/lab.yml)",
        description="Build the embedded lab: namespaces, the experiment switch, SSH into "
        "each host (playbooks/lab.yml). Does nothing for an inventory without a lab.",
        parents=[common, _playbook_options()],
    )
    up.set_defaults(handler=_lab_up)
    down = lab_actions.add_parser(
        "down",
        help="stop the VMs and remove the lab (playbooks/teardown.yml)",
        description="Stop the study's VMs and remove the embedded lab, leaving no namespace, "
        "route, QEMU or sshd behind (playbooks/teardown.yml).",
        parents=[common, _playbook_options()],
    )
    down.set_defaults(handler=_lab_down)
    status = lab_actions.add_parser(
        "status",
        help="show which lab namespaces exist and how the VMs stand",
        description="Show which of the lab's network namespaces exist and each "
        "hypervisor's VM state (running, postmigrate, inmigrate, absent). Read-only: runs "
        "no playbook.",
        parents=[common, _playbook_options(extra=False)],
    )
    status.set_defaults(handler=_lab_status)

    provision = commands.add_parser(
        "provision",
        help="install QEMU, build the guest, bridge the NICs (playbooks/provision.yml)",
        description="Install QEMU and the study's tools on the hypervisors, build the guest "
        "kernel and image once and put them on shared storage, and bridge each hypervisor's "
        "experiment NIC (playbooks/provision.yml).",
        parents=[common, _playbook_options()],
    )
    provision.set_defaults(handler=_provision)

    migrate = commands.add_parser(
        "migrate",
        help="migrate vm0 and verify it (migrate.yml)",
        description="Migrate vm0 from its source to its destination host and verify it "
        "(migrate.yml: builds the lab, provisions and launches first when needed). Shows "
        "a progress bar on a terminal, then the run's summary; the record is "
        "results/<run id>/run.json.",
        epilog="An option not given leaves its variable to -e, the inventory or the "
        "migration role's default (no bandwidth cap, 300 ms downtime limit, 600 s timeout). "
        "Ctrl-C stops the playbook.",
        parents=[common, _playbook_options()],
    )
    migrate.add_argument(
        "--reverse",
        action="store_true",
        help="migrate the other way, destination to source (the way back of a round trip)",
    )
    migrate.add_argument(
        "--max-bandwidth",
        metavar="BYTES",
        type=count,
        help="QEMU's max-bandwidth in bytes/s; 0 for no cap (the default)",
    )
    migrate.add_argument(
        "--downtime-limit",
        metavar="MS",
        type=count,
        help="QEMU's downtime-limit in milliseconds (default 300)",
    )
    migrate.add_argument(
        "--capability",
        metavar="NAME=on|off",
        type=capability,
        action="append",
        default=[],
        help="set a migration capability on both sides, e.g. multifd=on (repeatable)",
    )
    migrate.add_argument(
        "--parameter",
        metavar="NAME=VALUE",
        type=parameter,
        action="append",
        default=[],
        help="set a migration parameter, e.g. multifd-channels=4 (repeatable; numbers as "
        "numbers, on/off as booleans)",
    )
    migrate.add_argument(
        "--postcopy",
        action="store_true",
        help="turn on postcopy-ram and switch to postcopy after "
        "migration_postcopy_after_passes dirty-sync passes (default 1)",
    )
    migrate.add_argument(
        "--timeout",
        metavar="S",
        type=seconds,
        help="seconds before the migration is cancelled, the source running on (default 600)",
    )
    migrate.set_defaults(handler=_migrate)

    report = commands.add_parser(
        "report",
        help="show a run's summary",
        description="Show the summary of a recorded run; with --json, its whole run.json.",
        parents=[common],
    )
    report.add_argument(
        "run",
        metavar="RUN",
        nargs="?",
        default="latest",
        help="a run id (a directory under results/), 'latest' (the default), or the path of "
        "a run's directory or run.json",
    )
    report.add_argument(
        "--draw",
        action="store_true",
        help="(re)write the profiled run's report.md and plots from its run.json, and say where",
    )
    report.add_argument(
        "--results", metavar="DIR", help="the results directory (default: the project's results/)"
    )
    report.set_defaults(handler=_report)

    runs = commands.add_parser(
        "runs",
        help="list past runs with their key figures",
        description="List the recorded runs, oldest first: status, route, total time, "
        "downtime, data transferred, throughput and whether every verification passed.",
        parents=[common],
    )
    runs.add_argument(
        "--results", metavar="DIR", help="the results directory (default: the project's results/)"
    )
    runs.set_defaults(handler=_runs)

    campaigns = commands.add_parser(
        "campaign",
        help="check a campaign file and show its plan",
        description="Campaigns: studies of many migrations described in one YAML file "
        "(docs/campaigns.md).",
        parents=[common],
    )
    campaign_actions = campaigns.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = campaign_actions.add_parser(
        "check",
        help="check a campaign file and show the runs it plans, running nothing",
        description="Check a campaign file, naming every mistake by its place in the file "
        "(exit 2), and show the runs it plans in their order: guest by guest, each "
        "repetition of every method before the next. Runs nothing.",
        parents=[common],
    )
    check.add_argument("file", metavar="FILE", help="the campaign file (YAML)")
    check.set_defaults(handler=_campaign_check)
    run = campaign_actions.add_parser(
        "run",
        help="run a campaign: every migration it plans, then its CSV and summary",
        description="Run a campaign file's plan, one migrate.yml per run (the lab built, "
        "provisioned and launched first when needed), into "
        "results/campaigns/<name>-<stamp>/ or --into DIR; a line per run says how far it "
        "is. A failed run is recorded and the campaign goes on; Ctrl-C leaves DIR as far "
        "as it got, and running again --into DIR completes it. Writes campaign.json, "
        "runs.csv and summary.md there. -e sets a variable for every playbook it runs; one "
        "the campaign file sets itself is refused.",
        parents=[common, _playbook_options()],
    )
    run.add_argument("file", metavar="FILE", help="the campaign file (YAML)")
    run.add_argument("--into", metavar="DIR", help="the campaign's directory: resume it")
    run.add_argument(
        "--results", metavar="DIR", help="the results directory (default: the project's results/)"
    )
    run.set_defaults(handler=_campaign_run)
    redraw = campaign_actions.add_parser(
        "report",
        help="rewrite a campaign's runs.csv and summary.md from its records",
        description="Rewrite runs.csv and summary.md of the campaign in DIR from its "
        "campaign.json and the runs' run.json files alone, and show the summary.",
        parents=[common],
    )
    redraw.add_argument("directory", metavar="DIR", help="the campaign's directory")
    redraw.set_defaults(handler=_campaign_report)
    return parser


# -- the commands ---------------------------------------------------------------------


@dataclass
class Output:
    json: bool
    stdout: TextIO
    stderr: TextIO

    @property
    def interactive(self) -> bool:
        return not self.json and self.stdout.isatty()

    def emit(self, data: Any, text: str) -> None:
        print(json.dumps(data, indent=2, default=str) if self.json else text, file=self.stdout)


def _merged(dicts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for item in dicts:
        merged.update(item)
    return merged


def _playbook(
    args: argparse.Namespace, out: Output, title: str, step: Callable[..., PlaybookRun]
) -> int:
    line = StatusLine(out.stdout, out.interactive)
    try:
        run = step(
            extra_vars=_merged(args.extra_vars),
            project=args.project,
            inventory=args.inventory,
            on_task=lambda name: line.show(f"{title}: {name}"),
        )
    finally:
        line.clear()
    changed = ", ".join(f"{host} {count}" for host, count in sorted(run.changed.items()))
    out.emit(run.to_dict(), f"{title}: {run.status}; changed: {changed or 'nothing'}")
    return EXIT_OK


def _lab_up(args: argparse.Namespace, out: Output) -> int:
    return _playbook(args, out, "lab up", api.lab_up)


def _lab_down(args: argparse.Namespace, out: Output) -> int:
    return _playbook(args, out, "lab down", api.lab_down)


def _provision(args: argparse.Namespace, out: Output) -> int:
    return _playbook(args, out, "provision", api.provision)


def _lab_status(args: argparse.Namespace, out: Output) -> int:
    status = api.lab_status(project=args.project, inventory=args.inventory)
    out.emit(status.to_dict(), lab_status_text(status))
    return EXIT_OK


def _migrate(args: argparse.Namespace, out: Output) -> int:
    line = StatusLine(out.stdout, out.interactive)
    progress_shown = False

    def on_task(name: str) -> None:
        if not progress_shown:
            line.show(f"migrate: {name}")

    def on_progress(point: dict[str, Any]) -> None:
        nonlocal progress_shown
        progress_shown = True
        line.show(progress_line(point))

    try:
        result = api.migrate(
            reverse=args.reverse,
            max_bandwidth=args.max_bandwidth,
            downtime_limit=args.downtime_limit,
            capabilities=dict(args.capability) or None,
            parameters=dict(args.parameter) or None,
            postcopy=args.postcopy,
            timeout=args.timeout,
            extra_vars=_merged(args.extra_vars),
            on_progress=on_progress if out.interactive else None,
            on_task=on_task if out.interactive else None,
            project=args.project,
            inventory=args.inventory,
        )
    finally:
        if progress_shown:
            line.keep()
        else:
            line.clear()
    out.emit(result.to_dict(), summary_table(result))
    return EXIT_OK


def _report(args: argparse.Namespace, out: Output) -> int:
    result = api.result_of(args.run, results_dir=args.results, project=args.project)
    text = summary_table(result)
    if args.draw:
        path = api.draw_report(args.run, results_dir=args.results, project=args.project)
        text += f"\nreport: {path}"
    out.emit(result.record, text)
    return EXIT_OK


def _runs(args: argparse.Namespace, out: Output) -> int:
    recorded = api.runs(args.results, project=args.project)
    out.emit([run.to_dict() for run in recorded], runs_table(recorded))
    return EXIT_OK


def _campaign_check(args: argparse.Namespace, out: Output) -> int:
    planned = campaign.load(args.file)
    runs = planned.plan()
    document = {
        "name": planned.name,
        "description": planned.description,
        "direction": planned.direction,
        "probes": planned.probes,
        "baseline": planned.baseline,
        "runs": [
            {
                "number": run.number,
                "run_id": run.run_id,
                "guest": run.guest,
                "method": run.method,
                "rep": run.rep,
                "extra_vars": planned.extra_vars(run),
            }
            for run in runs
        ],
    }
    lines = [
        f"campaign {planned.name}: {len(runs)} runs, {planned.direction}, probes "
        f"{'on' if planned.probes else 'off'}, baseline {planned.baseline}",
    ]
    for name, guest in planned.guests.items():
        methods = [m for m, g in planned.cells if g == name]
        if methods:
            lines.append(
                f"  guest {name} ({guest.workload}): {planned.repetitions} x {', '.join(methods)}"
            )
    lines += [f"  {run.number:>4}  {run.run_id}" for run in runs]
    out.emit(document, "\n".join(lines))
    return EXIT_OK


def _campaign_run(args: argparse.Namespace, out: Output) -> int:
    planned = campaign.load(args.file)

    def show(progress: campaign_runner.Progress) -> None:
        if out.json:
            return
        took = f" ({progress.total_ms:.0f} ms)" if progress.total_ms is not None else ""
        eta = ""
        if progress.eta_s is not None and progress.done < progress.total:
            eta = f", about {progress.eta_s / 60:.0f} min left"
        print(
            f"run {progress.done} of {progress.total}: {progress.run.method} on "
            f"{progress.run.guest}, repetition {progress.run.rep}: {progress.outcome}{took}{eta}",
            file=out.stderr,
            flush=True,
        )

    outcome = campaign_runner.run_campaign(
        planned,
        into=args.into,
        results_dir=args.results,
        project=args.project,
        inventory=args.inventory,
        on_progress=show,
        extra_vars=_merged(args.extra_vars),
    )
    summary = (outcome.directory / "summary.md").read_text()
    out.emit(
        {
            "directory": str(outcome.directory),
            "completed": outcome.completed,
            "not_completed": outcome.not_completed,
            "runs": outcome.rows,
        },
        f"{summary}\n{outcome.completed} of {len(outcome.rows)} runs completed; "
        f"{outcome.directory}",
    )
    return EXIT_OK if outcome.not_completed == 0 else EXIT_MIGRATION_FAILED


def _campaign_report(args: argparse.Namespace, out: Output) -> int:
    directory = Path(args.directory)
    rows = campaign_runner.write_results(directory)
    out.emit({"directory": str(directory), "runs": rows}, (directory / "summary.md").read_text())
    return EXIT_OK


# -- errors and exit codes ------------------------------------------------------------


def exit_code(error: QmigrateError) -> int:
    if isinstance(error, MigrationFailed):
        return EXIT_MIGRATION_FAILED
    if isinstance(error, (BadInput, CampaignError)):
        return EXIT_BAD_INPUT
    return EXIT_INFRASTRUCTURE


def _error_document(error: QmigrateError) -> dict[str, Any]:
    document: dict[str, Any] = {"kind": type(error).__name__, "message": error.message}
    if isinstance(error, PlaybookFailed):
        document.update(
            task=error.task,
            host=error.host,
            playbook=error.playbook,
            artifacts=str(error.artifacts) if error.artifacts else None,
        )
    if isinstance(error, BadInput):
        document["variables"] = list(error.variables)
    if isinstance(error, CampaignError):
        document["problems"] = list(error.problems)
    if isinstance(error, MigrationFailed):
        document["result"] = error.result.to_dict() if error.result else None
    return {"error": document, "exit_code": exit_code(error)}


def _show_error(error: QmigrateError, out: Output) -> None:
    if out.json:
        print(json.dumps(_error_document(error), indent=2, default=str), file=out.stdout)
        return
    if isinstance(error, MigrationFailed) and error.result is not None:
        print(summary_table(error.result), file=out.stdout)
    kind = {
        EXIT_MIGRATION_FAILED: "migration failed",
        EXIT_BAD_INPUT: "bad input",
        EXIT_INFRASTRUCTURE: "error",
    }[exit_code(error)]
    print(f"qmigrate: {kind}: {error.message}", file=out.stderr)
    if isinstance(error, PlaybookFailed):
        if error.task:
            print(f"  task {error.task!r} on {error.host}", file=out.stderr)
        if isinstance(error, BadInput) and error.variables:
            print(f"  variables: {', '.join(error.variables)}", file=out.stderr)
        if error.artifacts:
            print(f"  ansible-runner artifacts: {error.artifacts}", file=out.stderr)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the qmigrate command with ARGV (default: sys.argv[1:]); return its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version, or a usage error (status 2)
        return int(stop.code or 0)
    out = Output(json=args.json, stdout=sys.stdout, stderr=sys.stderr)
    # SIGTERM stops a run as Ctrl-C does (the playbook is stopped, not orphaned).
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(args.handler(args, out))
    except QmigrateError as error:
        _show_error(error, out)
        return exit_code(error)
    except BrokenPipeError:
        # The reader went away (`qmigrate runs | head`): nothing more to say, and nothing
        # left to flush to it at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt as stop:
        print("qmigrate: interrupted", file=sys.stderr)
        record = getattr(stop, "record", None)
        if record is not None:
            print(f"  the run's record (status interrupted): {record}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
