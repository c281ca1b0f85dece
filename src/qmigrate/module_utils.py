"""The project's module_utils (qmp.py, migration.py) under the names Ansible gives them.

Modules import them as ``ansible.module_utils.qmp`` and ``ansible.module_utils.migration``:
Ansible ships the directory ansible.cfg names (``module_utils``) with each module that
imports from it. What runs on the controller instead (the progress reader, the benchmark,
the tests) imports them by the same names once ``use_module_utils`` has put the project's
directory on that package's search path, so there is one way to import them.
"""

from __future__ import annotations

from pathlib import Path

import ansible.module_utils


def use_module_utils(project_root: Path) -> None:
    """Make PROJECT_ROOT's module_utils importable as ``ansible.module_utils.<name>``.

    The directory is searched after Ansible's own module_utils. A module imported once
    stays imported: a process uses the module_utils of one project.
    """
    directory = str(Path(project_root) / "module_utils")
    if directory not in ansible.module_utils.__path__:
        ansible.module_utils.__path__.append(directory)
