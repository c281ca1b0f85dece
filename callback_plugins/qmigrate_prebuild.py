# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build the modules a migration runs before the first task needs them."""

from __future__ import annotations

DOCUMENTATION = """
    name: qmigrate_prebuild
    type: aggregate
    short_description: Builds the migration's modules while the playbook loads
    description:
        - Before a module first runs in an C(ansible-playbook) run, the task's worker builds
          its payload (AnsiballZ), parsing the module and every module_utils file it
          imports, C(ansible.module_utils.basic)'s tree included, about 0.17 s of one core
          here for each module, on the run's critical path. Ansible keeps the payload for
          the rest of the run (a cache in its per-run temporary directory, gone when the
          run ends), so every run pays it again for each module it uses.
        - When the playbook starts, this forks one child process that builds the modules
          named in O(modules) into that cache, on the other core, while the parent loads
          the plays and runs the controller-side tasks; a worker that needs one then finds
          it built (or waits for the child's build under Ansible's own lock).
        - It changes nothing a task does or sends, as the payload is the one the worker would
          build. If the child cannot build (another ansible-core, a module not found), the
          workers build as they always do, and C(-vvv) says so. A child still running when the
          playbook ends is stopped; it ignores Ctrl-C (the playbook's to handle) and ends by
          itself within 20 seconds in any case.
        - Loaded without being enabled, whenever C(callback_plugins) is on the callback
          path (ansible.cfg; the qmigrate Python API adds it for ansible-runner).
    options:
      modules:
        description:
          - The modules to build. An empty list builds none.
          - The default is the modules a migration runs on its hot path
            (C(playbooks/running.yml) and the migration role).
        type: list
        elements: str
        default: [qemu_vm, qemu_migrate, qemu_guest]
        env:
          - name: QMIGRATE_PREBUILD_MODULES
        ini:
          - section: callback_qmigrate_prebuild
            key: modules
"""

import os
import signal

from ansible import constants as C
from ansible.plugins.callback import CallbackBase

# Building three modules takes about half a second here; far longer means it is stuck.
CHILD_SECONDS = 20


def prebuild(modules: list[str]) -> list[str]:
    """Build MODULES into this run's module cache (what a task's worker does before it
    sends a module), in this process; returns the ones built or found built."""
    # Imported here: only the child needs them.
    from ansible.executor.module_common import modify_module
    from ansible.parsing.dataloader import DataLoader
    from ansible.plugins.loader import module_loader
    from ansible.template import Templar

    templar = Templar(loader=DataLoader())
    compression = C.config.get_config_value("DEFAULT_MODULE_COMPRESSION")
    built = []
    for name in modules:
        found = module_loader.find_plugin_with_context(name)
        if not found.resolved:
            continue
        modify_module(
            module_name=name,
            module_path=found.plugin_resolved_path,
            module_args={},
            templar=templar,
            # The interpreter goes into the payload's first line, after the cache: any
            # value builds the same cached payload (and spares the discovery).
            task_vars={"ansible_python_interpreter": "python3"},
            module_compression=compression,
        )
        built.append(name)
    return built


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "qmigrate_prebuild"
    CALLBACK_NEEDS_ENABLED = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._child: int | None = None
        self._started = False

    def v2_playbook_on_start(self, playbook) -> None:
        # Once per ansible-playbook run (it may be given several playbooks).
        if self._started:
            return
        self._started = True
        modules = [m for m in self.get_option("modules") or [] if m]
        if not modules:
            return
        # Ctrl-C and SIGTERM held back across the fork: the child must never run the
        # parent's handlers (they raise into Ansible's exit path, which removes the run's
        # temporary directory); it takes the default or ignores them before they arrive.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            pid = os.fork()
        except OSError as exc:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            self._display.vvv(f"qmigrate_prebuild: not building modules ahead: {exc}")
            return
        if pid:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            self._child = pid
            return
        # The child: build, then leave at once (os._exit: nothing of the parent's, such as
        # removing the run's temporary directory at exit, may run here). Ctrl-C is the
        # parent's to handle; SIGTERM (the parent's, at the end) ends it at once.
        # A child that hangs (a lock held at the fork, in some thread of the parent's) must
        # not keep a worker waiting for its build: it is ended after CHILD_SECONDS, which
        # releases Ansible's lock on the module it was building.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        signal.alarm(CHILD_SECONDS)
        status = 1
        try:
            prebuild(modules)
            status = 0
        except BaseException:  # the parent's workers build instead
            pass
        os._exit(status)

    def v2_playbook_on_stats(self, stats) -> None:
        if self._child is None:
            return
        pid, self._child = self._child, None
        done, status = os.waitpid(pid, os.WNOHANG)
        if not done:
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
            self._display.vvv("qmigrate_prebuild: stopped the module build still running")
        elif os.waitstatus_to_exitcode(status) != 0:
            self._display.vvv(
                "qmigrate_prebuild: the modules could not be built ahead; each task built its own"
            )
