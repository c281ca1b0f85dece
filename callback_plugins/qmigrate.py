# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible's default screen output, but a task that waits is not shown as failing."""

from __future__ import annotations

DOCUMENTATION = """
    name: qmigrate
    type: stdout
    short_description: Ansible's default screen output, waiting shown as waiting
    description:
        - The default callback, except for the attempts of a task that waits for something
          (an C(until) loop, such as waiting for the probes or for the guest's heartbeat).
          The default prints each as C(FAILED - RETRYING), which reads as an error although
          nothing has failed; this prints C(WAITING) instead. A task that runs out of
          attempts fails as usual.
    extends_documentation_fragment:
      - default_callback
      - result_format_callback
    requirements:
      - set as stdout_callback in ansible.cfg
"""

from ansible import constants as C
from ansible.plugins.callback.default import CallbackModule as DefaultCallback


class CallbackModule(DefaultCallback):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "qmigrate"

    def v2_runner_retry(self, result) -> None:
        task_name = result.task_name or result.task
        left = result.result["retries"] - result.result["attempts"]
        msg = f"WAITING: [{self.host_label(result)}]: {task_name} ({left} more tries)."
        if self._run_is_verbose(result, verbosity=2):
            msg += f" Result was: {self._dump_results(result.result)}"
        self._display.display(msg, color=C.COLOR_DEBUG)
