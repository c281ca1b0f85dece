"""The README and the docs/ pages: every relative link leads to a file that exists, and
the variables page is what the argument specs say."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_exists(page):
    targets = [t.split("#")[0] for t in LINK.findall(page.read_text())]
    local = [t for t in targets if t and not re.match(r"^[a-z]+:", t)]

    missing = [t for t in local if not (page.parent / t).exists()]

    assert missing == []


def test_the_variables_page_is_fresh():
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "variables-page"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert check.returncode == 0, check.stderr
