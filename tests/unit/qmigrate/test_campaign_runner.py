"""The campaign runner's bookkeeping (src/qmigrate/campaign_runner.py): which runs it
does, which way, which it skips when resumed, and what it writes. The playbooks are
stood in for by a function that writes each run's record where migrate.yml writes it;
tests/integration/test_campaign.py runs real campaigns on the lab."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from qmigrate import api, campaign_runner
from qmigrate.campaign import parse
from qmigrate.errors import BadInput, MigrationFailed, QmigrateError

CAMPAIGN = {
    "name": "tiny",
    "repetitions": 2,
    "direction": "ping-pong",
    "methods": {"a": {}, "b": {"multifd_channels": 2}},
    "guests": {"idle": {}},
}


class Lab:
    """Stands in for the playbooks: records each migration as (kind, run id, reverse) and
    each playbook run, and writes each run's run.json as the migration role would, a
    ping-pong campaign's runs as the rounds of one migrate.yml (migration_rounds), each
    from where the guest then is (FAIL: run ids whose migration fails; STOP_AT: the run id
    at which Ctrl-C comes)."""

    def __init__(
        self, fail: tuple[str, ...] = (), stop_at: str = "", profiled: tuple[str, ...] = ()
    ) -> None:
        # PROFILED: run ids whose record comes twice, as a profiled run's does (again with
        # the profile's verification, here a stream that did not survive)
        self.profiled = profiled
        self.calls: list[tuple[str, str, bool]] = []
        self.playbooks: list[list[str]] = []  # the run ids of each migrate.yml
        self.extra: list[dict] = []  # the extra variables of each playbook run
        self.fail = fail
        self.stop_at = stop_at

    def stop_vms(self, *, extra_vars, project=None, inventory=None):
        self.calls.append(("stop", "", False))
        self.extra.append(dict(extra_vars))

    def migrate(self, *, extra_vars, on_record=None, project=None, inventory=None):
        self.extra.append(dict(extra_vars))
        rounds = extra_vars.get("migration_rounds")
        reverse = extra_vars["qmigrate_reverse"]
        if rounds is None:
            self.playbooks.append([extra_vars["migration_run_id"]])
            record = self._migrate(extra_vars, extra_vars["migration_run_id"], reverse)
            if record["status"] == "failed":
                raise MigrationFailed("Fail with the cause", "labsrc", "timed out")
            return
        self.playbooks.append([r["run_id"] for r in rounds])
        for one in rounds:
            assert "qmigrate_reverse" not in one["vars"]
            record = self._migrate(extra_vars, one["run_id"], reverse)
            on_record(record)
            if one["run_id"] in self.profiled:
                verified = {**record["verification"], "tcp_stream_survived": False}
                on_record({**record, "verification": verified})
            if record["status"] == "completed":
                reverse = not reverse

    def _migrate(self, extra_vars, run_id: str, reverse: bool) -> dict:
        self.calls.append(("migrate", run_id, reverse))
        directory = Path(extra_vars["qmigrate_results_dir"]) / run_id
        directory.mkdir(parents=True, exist_ok=True)
        if run_id == self.stop_at:
            (directory / "run.json").write_text(json.dumps({"status": "interrupted"}))
            raise KeyboardInterrupt
        status = "failed" if run_id in self.fail else "completed"
        source, destination = ("labdst", "labsrc") if reverse else ("labsrc", "labdst")
        record = {
            "run_id": run_id,
            "status": status,
            "source": source,
            "destination": destination,
            "error": "timed out" if status == "failed" else "",
            "qemu": {"total_time_ms": 700 if status == "completed" else None},
            "verification": {"migration_completed": status == "completed"},
        }
        (directory / "run.json").write_text(json.dumps(record))
        return record


@pytest.fixture
def lab(monkeypatch):
    def install(**kwargs) -> Lab:
        stand_in = Lab(**kwargs)
        monkeypatch.setattr(api, "migrate", stand_in.migrate)
        monkeypatch.setattr(api, "stop_vms", stand_in.stop_vms)
        return stand_in

    return install


def run(tmp_path: Path, data: dict = CAMPAIGN, **kwargs):
    seen = []
    outcome = campaign_runner.run_campaign(
        parse(data, "tiny.yml"), into=tmp_path / "c", on_progress=seen.append, **kwargs
    )
    return outcome, seen


def test_a_ping_pong_campaign_boots_once_and_goes_back_and_forth(lab, tmp_path):
    stand_in = lab()

    outcome, seen = run(tmp_path)

    assert stand_in.calls == [
        ("stop", "", False),
        ("migrate", "idle-a-001", False),
        ("migrate", "idle-b-001", True),
        ("migrate", "idle-a-002", False),
        ("migrate", "idle-b-002", True),
    ]
    # the boot and the first migration, then the others as the rounds of one playbook run
    assert stand_in.playbooks == [["idle-a-001"], ["idle-b-001", "idle-a-002", "idle-b-002"]]
    assert outcome.completed == 4 and outcome.not_completed == 0
    assert [p.outcome for p in seen] == ["completed"] * 4
    assert [p.done for p in seen] == [1, 2, 3, 4]
    assert seen[0].eta_s is not None and seen[-1].total_ms == 700
    state = json.loads((tmp_path / "c" / "campaign.json").read_text())
    ran = [state["runs"][r] for one in stand_in.playbooks for r in one]
    assert [r["reverse"] for r in ran] == [False, True, False, True]
    assert all(r["wall_s"] >= 0 for r in ran)
    assert [r["stretch"] for r in ran] == [1, 2, 2, 2]
    assert [r["fresh"] for r in ran] == [True, False, False, False]


def test_a_profiled_runs_second_record_does_not_turn_the_guest_around(lab, tmp_path):
    """The migration role publishes a profiled run's record twice (the second with the
    profile's verification): the runner takes the guest's way from the first, its outcome
    from the last, and reports the run once."""
    stand_in = lab(profiled=("idle-a-001", "idle-b-001"))

    _, seen = run(tmp_path)

    assert [c[2] for c in stand_in.calls if c[0] == "migrate"] == [False, True, False, True]
    assert [p.done for p in seen] == [1, 2, 3, 4]
    state = json.loads((tmp_path / "c" / "campaign.json").read_text())
    assert [state["runs"][r]["reverse"] for r in ("idle-a-001", "idle-b-001")] == [False, True]
    assert state["runs"]["idle-b-001"]["outcome"] != "completed"
    assert state["runs"]["idle-a-002"]["outcome"] == "completed"


def test_each_round_gets_its_methods_variables_and_the_guest_its_own(lab, tmp_path, monkeypatch):
    given = []
    stand_in = lab()
    plain = stand_in.migrate

    def migrate(*, extra_vars, **kwargs):
        given.append(extra_vars)
        return plain(extra_vars=extra_vars, **kwargs)

    monkeypatch.setattr(api, "migrate", migrate)
    data = {**CAMPAIGN, "timeout": 90, "guests": {"idle": {"memory": "262148K"}}}

    run(tmp_path, data)

    for extra in given:
        assert extra["vm_memory"] == "262148K" and extra["migration_profile"] is False
        assert "migration_multifd_channels" not in extra and "migration_timeout" not in extra
    plain, multifd = (
        {"migration_timeout": 90},
        {"migration_timeout": 90, "migration_multifd_channels": 2},
    )
    assert [[r["vars"] for r in extra["migration_rounds"]] for extra in given] == [
        [plain],
        [multifd, plain, multifd],
    ]


def test_a_one_way_campaign_boots_the_guest_anew_before_every_run(lab, tmp_path):
    stand_in = lab()

    run(tmp_path, {**CAMPAIGN, "direction": "one-way"})

    stops = [c for c in stand_in.calls if c[0] == "stop"]
    assert len(stops) == 4
    assert len(stand_in.playbooks) == 4
    assert all(not reverse for kind, _, reverse in stand_in.calls if kind == "migrate")


def test_a_failed_run_is_recorded_and_the_next_goes_the_same_way_again(lab, tmp_path):
    stand_in = lab(fail=("idle-b-001",))

    outcome, seen = run(tmp_path)

    ways = [(run_id, reverse) for kind, run_id, reverse in stand_in.calls if kind == "migrate"]
    # b-001 would have brought the guest back; it failed, so a-002 goes back instead
    assert ways == [
        ("idle-a-001", False),
        ("idle-b-001", True),
        ("idle-a-002", True),
        ("idle-b-002", False),
    ]
    assert [p.outcome for p in seen] == ["completed", "failed", "completed", "completed"]
    assert outcome.completed == 3 and outcome.not_completed == 1
    rows = list(csv.DictReader((tmp_path / "c" / "runs.csv").open()))
    assert [r["status"] for r in rows] == ["completed", "failed", "completed", "completed"]
    assert rows[1]["error"] == "timed out"
    assert "- idle-b-001: failed: timed out" in (tmp_path / "c" / "summary.md").read_text()


def test_a_run_whose_verification_failed_counts_as_failed():
    record = {"status": "completed", "verification": {"a": True, "b": None, "c": False}}

    assert campaign_runner._outcome(record) == "failed"
    assert campaign_runner._outcome({**record, "verification": {"a": True, "b": None}}) == (
        "completed"
    )
    assert campaign_runner._outcome({"status": "failed"}) == "failed"


def test_interrupted_then_resumed_does_only_what_is_left(lab, tmp_path):
    lab(stop_at="idle-a-002")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path)
    state = json.loads((tmp_path / "c" / "campaign.json").read_text())
    assert state["runs"]["idle-a-002"].get("outcome") is None
    assert state["runs"]["idle-b-001"]["outcome"] == "completed"

    again = lab()
    outcome, seen = run(tmp_path)

    assert again.calls == [
        ("stop", "", False),  # where the guest is is not known: booted anew
        ("migrate", "idle-a-002", False),
        ("migrate", "idle-b-002", True),
    ]
    assert again.playbooks == [["idle-a-002"], ["idle-b-002"]]
    assert [p.outcome for p in seen] == ["skipped", "skipped", "completed", "completed"]
    assert outcome.completed == 4


def test_a_run_left_between_done_ones_is_a_stretch_of_its_own(lab, tmp_path):
    lab()
    outcome, _ = run(tmp_path)
    (outcome.directory / "idle-b-001" / "run.json").unlink()

    again = lab()
    run(tmp_path)

    assert again.playbooks == [["idle-b-001"]]
    assert again.calls[0] == ("stop", "", False)


def test_a_directory_of_another_campaign_is_refused(lab, tmp_path):
    lab()
    run(tmp_path)

    with pytest.raises(QmigrateError, match="holds another campaign's runs"):
        run(tmp_path, {**CAMPAIGN, "repetitions": 3})


def test_the_report_is_rewritten_from_the_records_alone(lab, tmp_path):
    lab()
    outcome, _ = run(tmp_path)
    (outcome.directory / "runs.csv").unlink()
    (outcome.directory / "summary.md").unlink()

    rows = campaign_runner.write_results(outcome.directory)

    assert [r["run_id"] for r in rows] == ["idle-a-001", "idle-b-001", "idle-a-002", "idle-b-002"]
    assert all(r["wall_s"] is not None for r in rows)
    assert (outcome.directory / "summary.md").read_text().startswith("# Campaign tiny")
    assert (outcome.directory / "runs.csv").exists()


def test_a_new_campaign_gets_a_directory_of_its_own(lab, tmp_path):
    lab()

    outcome = campaign_runner.run_campaign(
        parse(CAMPAIGN, "tiny.yml"), results_dir=tmp_path / "results"
    )

    assert outcome.directory.parent == tmp_path / "results" / "campaigns"
    assert outcome.directory.name.startswith("tiny-")
    assert (outcome.directory / "idle-a-001" / "run.json").exists()


@pytest.mark.parametrize("direction", ["ping-pong", "one-way"])
def test_extra_variables_go_to_every_playbook_of_the_campaign(lab, tmp_path, direction):
    stand_in = lab()
    extra = {"vm_extra_args": ["-name", "debug-threads=on"], "qmigrate_group": "study"}

    outcome, _ = run(tmp_path, {**CAMPAIGN, "direction": direction}, extra_vars=extra)

    assert outcome.completed == 4
    assert len(stand_in.extra) == (3 if direction == "ping-pong" else 8)
    for given in stand_in.extra:
        assert given["vm_extra_args"] == ["-name", "debug-threads=on"]
        assert given["qmigrate_group"] == "study"


@pytest.mark.parametrize(
    "name",
    ["migration_multifd_channels", "migration_profile", "migration_timeout", "qmigrate_reverse"],
)
def test_an_extra_variable_the_campaign_sets_itself_is_refused_before_anything_runs(
    lab, tmp_path, name
):
    stand_in = lab()

    with pytest.raises(BadInput, match=f"extra variables {name}: the campaign sets it itself"):
        run(tmp_path, {**CAMPAIGN, "timeout": 60}, extra_vars={name: 1})

    assert stand_in.calls == [] and not (tmp_path / "c").exists()


def test_a_one_way_campaign_prepares_the_lab_once_per_guest(lab, tmp_path):
    stand_in = lab()
    data = {**CAMPAIGN, "direction": "one-way", "guests": {"one": {}, "two": {"cpus": 1}}}

    run(tmp_path, data)

    # Each playbook's guest (vm_cpus tells them apart) and whether it skips preparing:
    # stop and migrate for each run, the first run of each guest preparing as ever
    seen = [
        ("two" if given.get("vm_cpus") else "one", given.get("qmigrate_prepare"))
        for given in stand_in.extra
    ]
    assert (
        seen
        == [("one", None)] * 2 + [("one", "skip")] * 6 + [("two", None)] * 2 + [("two", "skip")] * 6
    )


def test_a_ping_pong_guest_booted_again_skips_preparing(lab, tmp_path):
    stand_in = lab()
    # The second repetition of b already done: the runs before and after it are
    # stretches of their own, the second booting the guest anew
    done = tmp_path / "c" / "idle-b-002"
    done.mkdir(parents=True)
    (done / "run.json").write_text(json.dumps({"status": "completed", "qemu": {}}))
    data = {**CAMPAIGN, "repetitions": 3}

    run(tmp_path, data)

    prepare = [given.get("qmigrate_prepare") for given in stand_in.extra]
    assert stand_in.calls.count(("stop", "", False)) == 2
    # a-001 fresh (stop, migrate); b-001 and a-002 (rounds); a-003 fresh again (stop,
    # migrate: skipping); b-003 (rounds, the VMs running)
    assert prepare == [None, None, None, "skip", "skip", None]
