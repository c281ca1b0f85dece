"""Running a campaign: its plan through the Python API, into
results/campaigns/<name>-<stamp>/ (one run.json per run, as for any migration, then
campaign.json, runs.csv and summary.md from the records). A one-way campaign's runs are
a migrate.yml each; a ping-pong campaign's, after a guest's first, the rounds of one
migrate.yml (migration_rounds: several migrations back and forth in one playbook run).
The lab and provisioning are checked by a guest's first playbook in an invocation only.

Resumable: a directory given again (``into``) skips the runs whose record has an
outcome (completed or failed) and does the rest; a run stopped midway (Ctrl-C) is done
again. A failed run is recorded and the campaign goes on. In a ping-pong campaign each
run starts where the last one left the guest (a failed run is followed by the same way
again); a guest the campaign has not started in this invocation is booted anew.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qmigrate import api
from qmigrate.campaign import Campaign, Run
from qmigrate.campaign_results import plot_metrics, row, summary_markdown, to_csv
from qmigrate.errors import BadInput, MigrationFailed, QmigrateError
from qmigrate.runner import Project

OUTCOMES = ("completed", "failed")


@dataclass
class Progress:
    """What a campaign has done, after each run: RUN (the one just done or skipped), its
    OUTCOME (completed, failed, skipped), DONE of TOTAL, and an estimate of the seconds
    left from the runs this time (None until one ran)."""

    run: Run
    outcome: str
    done: int
    total: int
    eta_s: float | None
    total_ms: float | None = None


@dataclass
class CampaignOutcome:
    directory: Path
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def completed(self) -> int:
        return sum(1 for r in self.rows if r["status"] == "completed")

    @property
    def not_completed(self) -> int:
        """Runs that failed, or have no record."""
        return len(self.rows) - self.completed


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _record(directory: Path, run_id: str) -> dict[str, Any] | None:
    path = directory / run_id / "run.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write(path: Path, text: str) -> None:
    """PATH written whole or not at all (a campaign stopped midway leaves no torn file)."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)


class CampaignRunner:
    """Runs CAMPAIGN into DIRECTORY with the API's PROJECT and INVENTORY."""

    def __init__(
        self,
        campaign: Campaign,
        directory: Path,
        *,
        project: api.PathLike | None = None,
        inventory: api.PathLike | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        extra_vars: dict[str, Any] | None = None,
    ) -> None:
        self.campaign = campaign
        self.directory = directory
        self.project = project
        self.inventory = inventory
        self.extra_vars = checked_extra_vars(campaign, extra_vars)
        self.on_progress = on_progress
        self.state: dict[str, Any] = {"runs": {}}
        self.stretches = 0
        # Guests whose first playbook in this invocation has built the lab and provisioned
        # (or found it done): their later playbooks skip both (qmigrate_prepare=skip)
        self.prepared: set[str] = set()

    # -- the campaign's own record --------------------------------------------------------

    def _load_state(self) -> None:
        path = self.directory / "campaign.json"
        if not path.exists():
            return
        try:
            state = json.loads(path.read_text())
        except ValueError as exc:
            raise QmigrateError(f"{path} is not JSON ({exc}): not a campaign's directory") from None
        planned = [_planned(r) for r in self.campaign.plan()]
        if state.get("plan") != planned:
            raise QmigrateError(
                f"{self.directory} holds another campaign's runs "
                f"({state.get('name', 'unnamed')}, {len(state.get('plan') or [])} runs); "
                "give a new directory, or the campaign file those runs came from"
            )
        self.state = state

    def _save_state(self) -> None:
        runs = self.campaign.plan()
        document = {
            "name": self.campaign.name,
            "description": self.campaign.description,
            "source": self.campaign.source,
            "direction": self.campaign.direction,
            "probes": self.campaign.probes,
            "baseline": self.campaign.baseline,
            "repetitions": self.campaign.repetitions,
            "methods": {n: m.extra_vars() for n, m in self.campaign.methods.items()},
            "guests": {
                n: {**g.variables, "workload": g.workload} for n, g in self.campaign.guests.items()
            },
            "plan": [_planned(r) for r in runs],
            "runs": self.state.get("runs", {}),
        }
        self.state = document
        _write(self.directory / "campaign.json", json.dumps(document, indent=2, default=str))

    # -- running --------------------------------------------------------------------------

    def _api(self) -> dict[str, Any]:
        return {"project": self.project, "inventory": self.inventory}

    def _prepare(self, guest: str) -> dict[str, Any]:
        """What a playbook that boots GUEST anew sets for the lab and provisioning: they
        are done once per guest and invocation, not before each of its runs (which a
        one-way campaign's stopped VMs would otherwise bring about)."""
        return {"qmigrate_prepare": "skip"} if guest in self.prepared else {}

    def _migrate(self, run: Run) -> str:
        """One run of a one-way campaign, the guest booted anew on the source first; its
        outcome."""
        extra = {
            **self.extra_vars,
            **self.campaign.extra_vars(run),
            "migration_run_id": run.run_id,
            "qmigrate_results_dir": str(self.directory),
            "qmigrate_reverse": False,
            **self._prepare(run.guest),
        }
        api.stop_vms(extra_vars=extra, **self._api())
        try:
            api.migrate(extra_vars=extra, **self._api())
        except MigrationFailed:
            return "failed"
        finally:
            self.prepared.add(run.guest)
        return "completed"

    def run(self) -> CampaignOutcome:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._load_state()
        self._save_state()
        runs = self.campaign.plan()
        # Each record read once: the ones there before, then each run's as it ends
        records = {run.run_id: _record(self.directory, run.run_id) for run in runs}
        if self.campaign.direction == "ping-pong":
            self._run_rounds(runs, records)
        else:
            self._run_one_by_one(runs, records)
        return CampaignOutcome(self.directory, _write_results(self.directory, self.state, records))

    def _run_one_by_one(self, runs: list[Run], records: dict[str, dict[str, Any] | None]) -> None:
        """A one-way campaign: each run a migrate.yml of its own, the guest booted anew."""
        spent: list[float] = []
        for index, run in enumerate(runs, start=1):
            record = records[run.run_id]
            if record is not None and record.get("status") in OUTCOMES:
                self._report(run, "skipped", index, len(runs), spent, record)
                continue
            started = time.monotonic()
            self.state["runs"][run.run_id] = {"started": _stamp(), "reverse": False}
            self._save_state()
            outcome = self._migrate(run)
            wall = round(time.monotonic() - started, 3)
            spent.append(wall)
            self.state["runs"][run.run_id].update(wall_s=wall, outcome=outcome, fresh=True)
            self._save_state()
            records[run.run_id] = _record(self.directory, run.run_id)
            _write_results(self.directory, self.state, records, plots=False)
            self._report(run, outcome, index, len(runs), spent, records[run.run_id])

    def _run_rounds(self, runs: list[Run], records: dict[str, dict[str, Any] | None]) -> None:
        """A ping-pong campaign: each stretch of a guest's runs still to do in one
        migrate.yml (migration_rounds), each run a round from where the guest then is.
        A guest's first run in this invocation boots it anew (where an earlier one left
        it is not known), in a migrate.yml of its own. A failed round (its destination
        would not start, or its migration failed) is recorded and the rounds go on; one
        stopped midway has no record, and is done again when the campaign is run again
        into its directory."""
        spent: list[float] = []
        current_guest: str | None = None
        away = False  # the guest is on the destination host
        index = 0
        while index < len(runs):
            run = runs[index]
            record = records[run.run_id]
            if record is not None and record.get("status") in OUTCOMES:
                current_guest = None
                index += 1
                self._report(run, "skipped", index, len(runs), spent, record)
                continue
            fresh = run.guest != current_guest
            stretch = [run]
            # A guest booted anew migrates once in the playbook that boots it (and builds
            # and provisions the lab when its VMs are not running), its other runs in a
            # playbook of their own: the variables that building and provisioning leave
            # on the hosts made each later round there about 1 s slower.
            while not fresh and index + len(stretch) < len(runs):
                following = runs[index + len(stretch)]
                done = records[following.run_id]
                if following.guest != run.guest or (
                    done is not None and done.get("status") in OUTCOMES
                ):
                    break
                stretch.append(following)
            away = self._stretch(stretch, fresh, False if fresh else away, index, runs, spent)
            for done_run in stretch:
                records[done_run.run_id] = _record(self.directory, done_run.run_id)
            _write_results(self.directory, self.state, records, plots=False)
            current_guest = run.guest
            index += len(stretch)

    def _stretch(
        self,
        stretch: list[Run],
        fresh: bool,
        reverse: bool,
        offset: int,
        runs: list[Run],
        spent: list[float],
    ) -> bool:
        """STRETCH's runs as the rounds of one migrate.yml, the first REVERSE (back from
        the destination), the guest booted anew first when FRESH; whether the guest ends
        on the destination host."""
        guest = stretch[0].guest
        extra = {
            **self.extra_vars,
            **self.campaign.guest_vars(guest),
            "qmigrate_results_dir": str(self.directory),
            "qmigrate_reverse": reverse,
        }
        if fresh:
            extra.update(self._prepare(guest))
            api.stop_vms(extra_vars=extra, **self._api())
        position = {r.run_id: offset + i for i, r in enumerate(stretch, start=1)}
        by_id = {r.run_id: r for r in stretch}
        way = {"reverse": reverse, "last": time.monotonic()}
        reported: set[str] = set()
        # Which playbook run of this invocation did it (campaign.json's stretch)
        self.stretches += 1
        for r in stretch:
            self.state["runs"][r.run_id] = {
                "started": _stamp(),
                "fresh": fresh,
                "stretch": self.stretches,
            }
        self._save_state()

        def on_record(record: dict[str, Any]) -> None:
            run = by_id.get(str(record.get("run_id")))
            if run is None:
                return
            if run.run_id in reported:
                # A profiled run's record comes again with the profile's verification
                # added: its outcome may change, not where the guest is.
                self.state["runs"][run.run_id]["outcome"] = _outcome(record)
                self._save_state()
                return
            reported.add(run.run_id)
            now = time.monotonic()
            wall = round(now - way["last"], 3)
            way["last"] = now
            spent.append(wall)
            outcome = _outcome(record)
            self.state["runs"][run.run_id].update(
                wall_s=wall, outcome=outcome, reverse=way["reverse"]
            )
            if record.get("status") == "completed":
                way["reverse"] = not way["reverse"]
            self._save_state()
            self._report(run, outcome, position[run.run_id], len(runs), spent, record)

        rounds = [{"run_id": r.run_id, "vars": self.campaign.method_vars(r)} for r in stretch]
        # A failed round is recorded and the rounds go on: the playbook fails only for
        # what fails a campaign (BadInput, InfrastructureError, PlaybookFailed)
        try:
            api.migrate(
                extra_vars={**extra, "migration_rounds": rounds}, on_record=on_record, **self._api()
            )
        finally:
            self.prepared.add(guest)
        return bool(way["reverse"])

    def _report(
        self,
        run: Run,
        outcome: str,
        done: int,
        total: int,
        spent: list[float],
        record: dict[str, Any] | None,
    ) -> None:
        if self.on_progress is None:
            return
        eta = sum(spent) / len(spent) * (total - done) if spent else None
        total_ms = ((record or {}).get("qemu") or {}).get("total_time_ms")
        self.on_progress(Progress(run, outcome, done, total, eta, total_ms))


def _outcome(record: dict[str, Any]) -> str:
    """completed: the migration completed and every verification held; else failed."""
    checks = (record.get("verification") or {}).values()
    if record.get("status") == "completed" and all(c is None or c for c in checks):
        return "completed"
    return "failed"


def _planned(run: Run) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "number": run.number,
        "guest": run.guest,
        "method": run.method,
        "rep": run.rep,
    }


def write_results(directory: Path, plots: bool = True) -> list[dict[str, Any]]:
    """runs.csv and summary.md of the campaign in DIRECTORY, from its campaign.json and
    its runs' records alone (as they are now), and with PLOTS the comparison plots; its
    rows."""
    try:
        state = json.loads((directory / "campaign.json").read_text())
    except (OSError, ValueError) as exc:
        raise QmigrateError(f"{directory} has no readable campaign.json: {exc}") from None
    records = {p["run_id"]: _record(directory, p["run_id"]) for p in state.get("plan") or []}
    return _write_results(directory, state, records, plots)


def _write_results(
    directory: Path,
    state: dict[str, Any],
    records: dict[str, dict[str, Any] | None],
    plots: bool = True,
) -> list[dict[str, Any]]:
    """runs.csv and summary.md from the campaign's STATE (campaign.json) and its runs'
    RECORDS, and with PLOTS the comparison plots (a second or two of drawing: the runner
    draws them once, at the end); the rows."""
    ran = state.get("runs") or {}
    rows = [
        row(
            {**planned, "wall_s": (ran.get(planned["run_id"]) or {}).get("wall_s")},
            records.get(planned["run_id"]),
        )
        for planned in state.get("plan") or []
    ]
    _write(directory / "runs.csv", to_csv(rows))
    drawn = plot_metrics(rows, directory) if plots else []
    _write(
        directory / "summary.md",
        summary_markdown(
            str(state.get("name", directory.name)),
            str(state.get("description", "")),
            rows,
            str(state.get("baseline", "")),
            drawn,
        ),
    )
    return rows


# What the runner sets itself, in every playbook or round
RUNNER_VARS = (
    "migration_run_id",
    "qmigrate_results_dir",
    "qmigrate_reverse",
    "migration_rounds",
    "qmigrate_prepare",
)


def checked_extra_vars(campaign: Campaign, extra_vars: dict[str, Any] | None) -> dict[str, Any]:
    """EXTRA_VARS for every playbook of CAMPAIGN, refused (BadInput) where they name a
    variable the campaign or the runner sets: the campaign file says how its runs differ,
    and an extra variable would win over it in one place (a ping-pong round's variables)
    and not in another."""
    extra = dict(extra_vars or {})
    clash = sorted(set(extra) & (campaign.variables() | set(RUNNER_VARS)))
    if clash:
        raise BadInput(
            "",
            "",
            f"extra variables {', '.join(clash)}: the campaign sets "
            f"{'it' if len(clash) == 1 else 'them'} itself; change "
            f"{'it' if len(clash) == 1 else 'them'} in the campaign file ({campaign.source})",
            variables=tuple(clash),
        )
    return extra


def campaign_directory(campaign: Campaign, results_dir: Path) -> Path:
    """A new directory for CAMPAIGN's runs: results/campaigns/<name>-<stamp>."""
    return results_dir / "campaigns" / f"{campaign.name}-{_stamp()}"


def run_campaign(
    campaign: Campaign,
    *,
    into: api.PathLike | None = None,
    results_dir: api.PathLike | None = None,
    project: api.PathLike | None = None,
    inventory: api.PathLike | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    extra_vars: dict[str, Any] | None = None,
) -> CampaignOutcome:
    """Run CAMPAIGN's plan into INTO (resuming what is there), or into a new directory
    under RESULTS_DIR (default: the project's results/), and return its rows. EXTRA_VARS
    go to every playbook the campaign runs (settings of the inventory, vm_extra_args, ...);
    one that the campaign sets itself (a method's, a guest's, the timeout, the runner's own)
    is refused with BadInput before anything runs.

    Raises what the API raises for anything but a failed migration (BadInput,
    InfrastructureError, PlaybookFailed), and KeyboardInterrupt: the directory then
    holds what was done, and running again INTO it completes the campaign.
    """
    if into is not None:
        directory = Path(into)
    else:
        base = Path(results_dir) if results_dir is not None else Project.locate(project).results
        directory = campaign_directory(campaign, base)
    runner = CampaignRunner(
        campaign,
        directory,
        project=project,
        inventory=inventory,
        on_progress=on_progress,
        extra_vars=extra_vars,
    )
    return runner.run()
