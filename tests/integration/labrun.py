"""Run the project's playbooks against the embedded lab, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAB_NAMESPACES = ("lablan", "labsrc", "labdst", "labclient")


@dataclass
class PlaybookRun:
    rc: int
    stdout: str
    stderr: str

    @property
    def reports(self) -> list[dict]:
        """The JSON callback's documents, one per playbook."""
        decoder, docs, pos = json.JSONDecoder(), [], 0
        while pos < len(self.stdout.rstrip()):
            doc, pos = decoder.raw_decode(self.stdout, pos)
            docs.append(doc)
            while pos < len(self.stdout) and self.stdout[pos].isspace():
                pos += 1
        return docs

    @property
    def changed(self) -> dict[str, int]:
        """Changed tasks per host, over all the playbooks run."""
        total: dict[str, int] = {}
        for doc in self.reports:
            for host, stats in doc["stats"].items():
                total[host] = total.get(host, 0) + stats["changed"]
        return total

    @property
    def text(self) -> str:
        return self.stdout + self.stderr


def run_playbooks(*playbooks: str, extra_vars: dict | None = None, timeout: int = 1200):
    """ansible-playbook on the lab inventory; the JSON callback gives per-host stats."""
    argv = ["ansible-playbook", *(f"playbooks/{p}.yml" for p in playbooks)]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_NOCOLOR": "1",
    }
    proc = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    return PlaybookRun(proc.returncode, proc.stdout, proc.stderr)


def lab_namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()} & set(
        LAB_NAMESPACES
    )
