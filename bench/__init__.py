"""qmigrate's benchmark suite (issue 7): `python -m bench` on the embedded lab.

It measures, on one lab and one VM spec, the seed's hand-typed migration against
qmigrate's, the link the migration runs over and what bounds it, the orchestration's
overhead, and larger and busier guests; it prints a table and writes bench/results/.
Nothing here is part of `make test`'s pass/fail: benchmarks print figures.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The project's stdlib-only QMP/HMP clients, used as plain modules (as the unit tests do).
if str(ROOT / "module_utils") not in sys.path:
    sys.path.append(str(ROOT / "module_utils"))
