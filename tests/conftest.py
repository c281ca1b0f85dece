"""For every test: the project's module_utils importable as the modules import them,
``ansible.module_utils.qmp`` and ``ansible.module_utils.migration``. Done on import, not
in a hook: other conftest files import them at their top."""

from __future__ import annotations

from qmigrate.module_utils import use_module_utils
from tests import ROOT

use_module_utils(ROOT)
