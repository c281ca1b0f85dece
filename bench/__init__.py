"""qmigrate's benchmark suite (issue 7): `python -m bench` on the embedded lab.

It measures, on one lab and one VM spec, the seed's hand-typed migration against
qmigrate's, the link the migration runs over and what bounds it, the orchestration's
overhead, and larger and busier guests; it prints a table and writes bench/results/.
Nothing here is part of `make test`'s pass/fail: benchmarks print figures.
"""

from __future__ import annotations

from pathlib import Path

from qmigrate.module_utils import use_module_utils

ROOT = Path(__file__).resolve().parents[1]

# The project's QMP/HMP clients, imported as the modules import them.
use_module_utils(ROOT)
