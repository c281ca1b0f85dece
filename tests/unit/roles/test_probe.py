"""The probe role's program (roles/probe/files/qmigrate-probe), run on the hosts during a
migration: iperf3, ping and interface counters, each printed as one JSON document."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests import ROOT


def test_the_probe_program_interrupts_a_hung_iperf3_and_keeps_its_output(tmp_path):
    fake = tmp_path / "iperf3"
    output = json.dumps({"intervals": [{"sum": {}}], "error": "interrupt"})
    (tmp_path / "out.json").write_text(output)
    fake.write_text(
        "#!/bin/sh\n"
        f"trap 'kill $!; cat {tmp_path}/out.json; exit 1' INT\n"
        "sleep 30 >/dev/null 2>&1 & wait\n"
    )
    fake.chmod(0o755)
    probe = ROOT / "roles" / "probe" / "files" / "qmigrate-probe"
    run = subprocess.run(
        [
            sys.executable,
            str(probe),
            "iperf3",
            "--duration",
            "0.5",
            "--grace",
            "0.5",
            "--",
            "-c",
            "x",
        ],
        capture_output=True,
        text=True,
        timeout=20,
        env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"},
        check=True,
    )
    doc = json.loads(run.stdout)
    assert doc["rc"] == -2 and "interrupted" in doc["stderr"]
    assert doc["output"] == {"intervals": [{"sum": {}}], "error": "interrupt"}
