"""``python -m qmigrate``: the qmigrate command."""

import sys

from qmigrate.cli import main

sys.exit(main())
