"""What the module tests share: a fake QEMU to talk to, and main() run as Ansible runs it."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes

from tests.unit.fakes import FakeQEMU


@pytest.fixture
def qemu(tmp_path: Path):
    """Starts a FakeQEMU with the given script (each on a socket of its own); stopped after."""
    fakes: list[FakeQEMU] = []

    def start(**script: Any) -> FakeQEMU:
        fakes.append(FakeQEMU(tmp_path / f"qmp{len(fakes)}.sock", **script))
        return fakes[-1]

    yield start
    for fake in fakes:
        fake.stop()


@pytest.fixture
def run_main() -> Callable[[ModuleType, dict], dict]:
    """Runs a module's main() with module arguments ARGS, as Ansible runs it; its JSON
    result."""

    def run(module: ModuleType, args: dict) -> dict:
        out = io.StringIO()
        basic._ANSIBLE_ARGS = to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
        basic._ANSIBLE_PROFILE = "legacy"
        try:
            with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
                module.main()
        finally:
            basic._ANSIBLE_ARGS = None
        return json.loads(out.getvalue())

    return run
