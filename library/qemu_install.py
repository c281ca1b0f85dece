#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: qemu_install
short_description: Put a second QEMU beside the distribution's, from a Debian suite
description:
  - Unpacks one version of Debian's QEMU packages (C(qemu-system-x86),
    C(qemu-system-common), C(qemu-system-data)) and that suite's SeaBIOS under O(prefix),
    so that it runs beside the QEMU the system's package manager installed and changes
    none of its files. The packages come from O(suite) (by default Debian 12's backports,
    which has QEMU 10.0), read with an apt state of the module's own under O(cache_dir);
    the host's package sources are not changed.
  - The system libraries the unpacked QEMU links against are installed with the host's
    own package manager where missing (Debian 12's versions satisfy QEMU 10.0's).
  - A QEMU so unpacked looks for its firmware in the distribution's directories unless
    told otherwise (Debian's build is not relocatable); start it with C(-L) for each of
    RV(firmware_dirs), as the vm role does.
  - Does nothing when O(prefix) already holds O(version) (its stamp file says so and its
    binary runs).
version_added: "0.1.0"
author: qmigrate developers
options:
  version:
    description:
      - The Debian package version of QEMU to unpack, as the suite lists it.
    type: str
    required: true
  prefix:
    description:
      - Where to unpack it (the binary is then C(<prefix>/usr/bin/qemu-system-x86_64)).
      - An absolute path; a prefix holding another version is replaced.
    type: path
    required: true
  suite:
    description: The Debian suite that has O(version).
    type: str
    default: bookworm-backports
  mirror:
    description: The Debian mirror to read O(suite) from.
    type: str
    default: http://deb.debian.org/debian
  keyring:
    description: The keyring that signs O(suite).
    type: path
    default: /usr/share/keyrings/debian-archive-keyring.gpg
  cache_dir:
    description: The module's own apt state (package lists) and the downloaded packages.
    type: path
    default: /var/cache/qmigrate/qemu
  lock_timeout:
    description: Seconds to wait for the package manager's lock, for missing libraries.
    type: int
    default: 600
notes:
  - Supports check mode (reports whether it would unpack, without downloading).
  - Debian and Ubuntu hosts (dpkg and apt); the packages must be for the host's release.
"""

EXAMPLES = r"""
- name: Put Debian 12's backported QEMU 10.0 under /opt/qmigrate/qemu/backports
  qemu_install:
    version: "1:10.0.2+ds-2+deb13u1~bpo12+1"
    prefix: /opt/qmigrate/qemu/backports
  register: qemu10

- name: Show what runs
  ansible.builtin.debug:
    msg: "{{ qemu10.binary }} is {{ qemu10.qemu_version }}"
"""

RETURN = r"""
binary:
  description: The unpacked QEMU's executable.
  returned: success
  type: str
  sample: /opt/qmigrate/qemu/backports/usr/bin/qemu-system-x86_64
firmware_dirs:
  description: The directories to give QEMU with C(-L), in order.
  returned: success
  type: list
  elements: str
  sample:
    - /opt/qmigrate/qemu/backports/usr/share/qemu
    - /opt/qmigrate/qemu/backports/usr/share/seabios
qemu_version:
  description: The first line of the binary's C(-version) (empty in check mode before unpacking).
  returned: success
  type: str
  sample: QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)
packages:
  description: The package files unpacked (on a change).
  returned: changed
  type: list
  elements: str
libraries_installed:
  description: System libraries installed because the unpacked QEMU needs them.
  returned: changed
  type: list
  elements: str
"""

import json
import os
import re
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule

PACKAGES = ("qemu-system-x86", "qemu-system-common", "qemu-system-data")
FIRMWARE = "seabios"
STAMP = ".qmigrate-qemu.json"
# Dependencies unpacked with QEMU, or given by the host's own QEMU: not libraries to install
NOT_LIBRARIES = set(PACKAGES) | {FIRMWARE, "ipxe-qemu"}


def binary_of(prefix: str) -> str:
    return os.path.join(prefix, "usr", "bin", "qemu-system-x86_64")


def firmware_dirs_of(prefix: str) -> list[str]:
    return [
        os.path.join(prefix, "usr", "share", "qemu"),
        os.path.join(prefix, "usr", "share", "seabios"),
    ]


def dependency_names(depends: str) -> list[str]:
    """Package names of a Depends field, the first of each alternative, without versions
    or architecture qualifiers."""
    names = []
    for clause in depends.split(","):
        first = clause.split("|")[0].strip()
        name = re.split(r"[\s(:]", first, maxsplit=1)[0]
        if name and name not in names:
            names.append(name)
    return names


class Installer:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.p = module.params
        self.prefix = os.path.normpath(self.p["prefix"])
        self.apt_dir = os.path.join(self.p["cache_dir"], "apt")

    def fail(self, msg: str, **extra) -> None:
        self.module.fail_json(msg=msg, **extra)

    def run(self, argv: list[str], what: str) -> str:
        rc, out, err = self.module.run_command(argv, environ_update={"LC_ALL": "C"})
        if rc != 0:
            self.fail(f"{what} failed (exit {rc}): {(err or out).strip()[-2000:]}", argv=argv)
        return out

    def installed_version(self) -> str | None:
        try:
            with open(os.path.join(self.prefix, STAMP)) as f:
                stamp = json.load(f)
        except (OSError, ValueError):
            return None
        if not os.access(binary_of(self.prefix), os.X_OK):
            return None
        return stamp.get("version") if isinstance(stamp, dict) else None

    def qemu_version(self) -> str:
        rc, out, err = self.module.run_command([binary_of(self.prefix), "-version"])
        if rc != 0:
            missing = re.findall(r"error while loading shared libraries: (\S+)", err or "")
            why = f"it needs {', '.join(missing)}" if missing else (err or out).strip()
            self.fail(f"the QEMU unpacked under {self.prefix} does not run: {why}")
        return out.splitlines()[0].strip() if out else ""

    def apt_options(self) -> list[str]:
        d = self.apt_dir
        return [
            "-o", f"Dir::Etc::SourceList={d}/sources.list",
            "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={d}/lists",
            "-o", f"Dir::Cache={d}/cache",
            "-o", "APT::Sandbox::User=root",
            "-o", "Acquire::Retries=2",
        ]  # fmt: skip

    def download(self, workdir: str) -> list[str]:
        """The suite's packages of the version asked, in WORKDIR: read with the module's own
        package lists, so that the host's sources and lists stay as they are."""
        for sub in ("lists/partial", "cache/archives/partial"):
            os.makedirs(os.path.join(self.apt_dir, sub), exist_ok=True)
        with open(os.path.join(self.apt_dir, "sources.list"), "w") as f:
            f.write(
                f"deb [signed-by={self.p['keyring']}] {self.p['mirror']} {self.p['suite']} main\n"
            )
        apt = ["apt-get", "-q", *self.apt_options()]
        self.run([*apt, "update"], f"reading {self.p['suite']} from {self.p['mirror']}")
        version = self.p["version"]
        wanted = [f"{name}={version}" for name in PACKAGES] + [f"{FIRMWARE}/{self.p['suite']}"]
        rc, out, err = self.module.run_command([*apt, "download", *wanted], cwd=workdir)
        if rc != 0:
            _, listed, _ = self.module.run_command(
                ["apt-cache", *self.apt_options(), "madison", PACKAGES[0]]
            )
            versions = [line.split("|")[1].strip() for line in listed.splitlines() if "|" in line]
            self.fail(
                f"{self.p['suite']} at {self.p['mirror']} does not have QEMU {version}; it has "
                f"{', '.join(versions) or 'no QEMU'} (apt-get download: "
                f"{(err or out).strip().splitlines()[-1:]})"
            )
        return sorted(os.path.join(workdir, n) for n in os.listdir(workdir) if n.endswith(".deb"))

    def missing_libraries(self, debs: list[str]) -> list[str]:
        names: list[str] = []
        for deb in debs:
            depends = self.run(["dpkg-deb", "-f", deb, "Depends"], f"reading {deb}")
            names += [n for n in dependency_names(depends) if n not in NOT_LIBRARIES]
        missing = []
        for name in dict.fromkeys(names):
            rc, out, _ = self.module.run_command(["dpkg-query", "-W", "-f=${Status}", name])
            if rc != 0 or "install ok installed" not in out:
                missing.append(name)
        return missing

    def install_libraries(self, names: list[str]) -> None:
        if not names:
            return
        apt = ["apt-get", "-q", "-y", "--no-install-recommends",
               "-o", f"DPkg::Lock::Timeout={self.p['lock_timeout']}"]  # fmt: skip
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        rc, out, err = self.module.run_command([*apt, "install", *names], environ_update=env)
        if rc != 0:
            self.run(["apt-get", "-q", "update"], "refreshing the host's package lists")
            rc, out, err = self.module.run_command([*apt, "install", *names], environ_update=env)
        if rc != 0:
            self.fail(f"installing the libraries QEMU needs ({', '.join(names)}) failed: "
                      f"{(err or out).strip()[-1000:]}")  # fmt: skip

    def unpack(self, debs: list[str]) -> None:
        parent = os.path.dirname(self.prefix)
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".qemu-", dir=parent)
        try:
            for deb in debs:
                self.run(["dpkg-deb", "-x", deb, staging], f"unpacking {os.path.basename(deb)}")
            with open(os.path.join(staging, STAMP), "w") as f:
                json.dump({"version": self.p["version"], "suite": self.p["suite"],
                           "packages": [os.path.basename(d) for d in debs]}, f)  # fmt: skip
            if os.path.lexists(self.prefix):
                shutil.rmtree(self.prefix)
            os.rename(staging, self.prefix)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def main(self) -> None:
        result = {"binary": binary_of(self.prefix), "firmware_dirs": firmware_dirs_of(self.prefix)}
        if self.installed_version() == self.p["version"]:
            self.module.exit_json(changed=False, qemu_version=self.qemu_version(), **result)
        if self.module.check_mode:
            self.module.exit_json(changed=True, qemu_version="", **result)
        downloads = os.path.join(self.p["cache_dir"], "debs")
        shutil.rmtree(downloads, ignore_errors=True)
        os.makedirs(downloads)
        debs = self.download(downloads)
        libraries = self.missing_libraries(debs)
        self.install_libraries(libraries)
        self.unpack(debs)
        self.module.exit_json(
            changed=True,
            qemu_version=self.qemu_version(),
            packages=[os.path.basename(d) for d in debs],
            libraries_installed=libraries,
            **result,
        )


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            version=dict(type="str", required=True),
            prefix=dict(type="path", required=True),
            suite=dict(type="str", default="bookworm-backports"),
            mirror=dict(type="str", default="http://deb.debian.org/debian"),
            keyring=dict(type="path", default="/usr/share/keyrings/debian-archive-keyring.gpg"),
            cache_dir=dict(type="path", default="/var/cache/qmigrate/qemu"),
            lock_timeout=dict(type="int", default=600),
        ),
        supports_check_mode=True,
    )
    if (
        not os.path.isabs(module.params["prefix"])
        or os.path.normpath(module.params["prefix"]) == "/"
    ):
        module.fail_json(
            msg=f"prefix: {module.params['prefix']!r} must be an absolute path other than /"
        )
    Installer(module).main()


if __name__ == "__main__":
    main()
