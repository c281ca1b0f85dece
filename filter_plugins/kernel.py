# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the guest_kernel role takes a kernel from, and which of its modules a guest loads.

A kernel comes from a distribution's package or from a build. A package is named by a
metapackage (``linux-image-cloud-amd64``) that apt resolves to the versioned package it
depends on (``linux-image-6.1.0-28-cloud-amd64``), whose name gives the kernel's release;
on Ubuntu the modules are a package of their own, ``linux-modules-<release>``. A build's
source is Debian's linux-source package, a tarball at a URL or a tarball on the builder,
and its cache key is a hash of what identifies that source, the version and the options.

Either way ``modprobe --show-depends`` says which module files to load, in order, for the
modules asked for: guest_kernel for the guest's NICs, guest_image for the root disk.

The inputs are what ``apt-cache depends``, ``apt-cache show`` and
``modprobe --show-depends`` print and the roles' own variables, never whole registered
results: a skipped task's result has no stdout, and the roles pass '' or [] for it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import posixpath
import re
from urllib.parse import urlsplit

from ansible.errors import AnsibleFilterError

# Debian marks an unsigned build with a suffix (linux-image-6.1.0-28-cloud-amd64-unsigned),
# Ubuntu with a prefix (linux-image-unsigned-6.8.0-49-generic).
VERSIONED_IMAGE = re.compile(r"linux-image-(unsigned-)?[0-9]")
DEPENDS = "Depends: "
INSMOD = re.compile(r"insmod (\S+)")
# The fields of an `apt-cache show` entry that a build needs.
APT_FIELDS = re.compile(r"^(Version|Filename|SHA256): (\S+)$", re.MULTILINE)
URL = re.compile(r"(https?|ftp)://")
# X.Y or X.Y.Z at the start of a package version (after any epoch) or a tarball's name.
SOURCE_VERSION = re.compile(r"^(?:[0-9]+:|linux-)?([0-9]+\.[0-9]+(?:\.[0-9]+)?)(?:-|\.tar\.)")
SHORT_VERSION = re.compile(r"^([0-9]+\.[0-9]+)$")


def _lines(value, what: str) -> list[str]:
    # A whole stdout passed for its lines would be read one character at a time.
    if not isinstance(value, list):
        raise AnsibleFilterError(
            f"{what} expects a command's stdout_lines (a list), got {type(value).__name__}"
        )
    return [str(line) for line in value]


def _text(value, what: str) -> str:
    if not isinstance(value, str):
        raise AnsibleFilterError(f"{what} expects a string, got {type(value).__name__}")
    return value


def _depends(lines: list[str]) -> list[str]:
    """The packages named on the Depends lines of `apt-cache depends`. An alternative
    (`|Depends:`) and a virtual package's providers (indented names) are not Depends
    lines."""
    return [line.strip()[len(DEPENDS) :] for line in lines if line.strip().startswith(DEPENDS)]


def versioned_package(requested: str, depends_lines: list[str]) -> str:
    """The versioned kernel package to take the kernel from: REQUESTED itself when it is
    versioned, else the first versioned kernel package it depends on by DEPENDS_LINES (the
    stdout_lines of `apt-cache depends REQUESTED`); '' when it depends on none."""
    requested = _text(requested, "guest_kernel_versioned_package")
    if VERSIONED_IMAGE.match(requested):
        return requested
    lines = _lines(depends_lines, "guest_kernel_versioned_package")
    return next((name for name in _depends(lines) if VERSIONED_IMAGE.match(name)), "")


def package_release(package: str) -> str:
    """The kernel release a versioned kernel package holds, as in boot/vmlinuz-<release>
    and lib/modules/<release>/: linux-image-6.1.0-28-cloud-amd64 holds
    6.1.0-28-cloud-amd64, and so do its unsigned builds."""
    release = re.sub(
        r"^linux-image-(unsigned-)?", "", _text(package, "guest_kernel_package_release")
    )
    return re.sub(r"-unsigned$", "", release)


def packages(package: str, depends_lines: list[str]) -> list[str]:
    """The packages to download for the versioned kernel package PACKAGE: itself, and the
    linux-modules-<release> package that Ubuntu ships its modules in, when DEPENDS_LINES
    (the stdout_lines of `apt-cache depends PACKAGE`) name it. Other linux-modules-*
    packages (linux-modules-extra-<release>) are not needed."""
    modules = f"linux-modules-{package_release(package)}"
    lines = _lines(depends_lines, "guest_kernel_packages")
    return [package] + [name for name in _depends(lines) if name == modules]


def module_files(show_depends_lines: list[str]) -> list[str]:
    """The module files to load, in order, from the stdout_lines of
    `modprobe --show-depends`: its `insmod <file> [options]` lines, each file once, where
    it first appears. A module built into the kernel (`builtin <name>`) needs no loading."""
    files: list[str] = []
    for line in _lines(show_depends_lines, "guest_kernel_module_files"):
        found = INSMOD.match(line)
        if found and found[1] not in files:
            files.append(found[1])
    return files


def apt_fields(show_stdout: str) -> dict[str, str]:
    """Version, Filename and SHA256 of the package entry in SHOW_STDOUT (the stdout of
    `apt-cache show --no-all-versions PACKAGE`); the fields it lacks are left out."""
    return dict(APT_FIELDS.findall(_text(show_stdout, "guest_kernel_apt_fields")))


def _url_name(location: str) -> str:
    return posixpath.basename(urlsplit(location).path)


def build_source(
    tarball: str, fields: dict, sources_dir: str, checksum: str, package: str, release: str
) -> dict:
    """What a build is built from. TARBALL is guest_kernel_build_tarball: empty for
    Debian's source package PACKAGE from RELEASE, whose index entry is FIELDS (from
    apt_fields); a URL downloaded into SOURCES_DIR; or a file on the builder whose SHA-256
    is CHECKSUM ('' until it is read).

    kind: package, url or file. path: the source file on the builder. id: what identifies
    its content in the cache key: the package's SHA-256 from the signed index, a URL, or a
    file's own SHA-256. label: the source named for people. version: the X.Y[.Z] that the
    package's version or the tarball's name gives, '' if none. version_origin: which of
    the two gave it."""
    tarball = _text(tarball, "guest_kernel_build_source")
    if not tarball:
        kind = "package"
        path = posixpath.join(sources_dir, posixpath.basename(fields.get("Filename", "")))
        source_id = "sha256:" + fields.get("SHA256", "")
        label = f"{package} {fields.get('Version', '')} from {release}"
        named = fields.get("Version", "")
        origin = "the package version " + fields.get("Version", "")
    else:
        kind = "url" if URL.match(tarball) else "file"
        if kind == "url":
            path = posixpath.join(sources_dir, _url_name(tarball))
            source_id = tarball
        else:
            path = tarball
            source_id = "sha256:" + checksum
        label = tarball
        named = _url_name(tarball)
        origin = "the tarball's name"
    version = SOURCE_VERSION.search(named)
    return {
        "kind": kind,
        "path": path,
        "id": source_id,
        "label": label,
        "version": version[1] if version else "",
        "version_origin": origin,
    }


def _full_version(version: str) -> str:
    # X.Y means X.Y.0, as the kernel's Makefile counts.
    return SHORT_VERSION.sub(r"\1.0", version)


def build_version(requested: str, source: dict) -> dict:
    """The version to build: REQUESTED (guest_kernel_build_version) or, when that is
    empty, the one SOURCE (from build_source) holds.

    version: that version. version_from: where the number came from, for the error when
    the source holds another. matches: whether REQUESTED is the version the source holds,
    X.Y being X.Y.0."""
    requested = _text(requested, "guest_kernel_build_version")
    held = source["version"]
    return {
        "version": requested or held,
        "version_from": (
            f"guest_kernel_build_version {requested}"
            if requested
            else f"version {held} from {source['version_origin']}"
        ),
        "matches": _full_version(requested) == _full_version(held),
    }


def build_key(recipe: int, source_id: str, version: str, options: list[str]) -> str:
    """The cache key of a build: 12 hex digits of the SHA-256 of the build RECIPE's number,
    the source's id, the VERSION and the config OPTIONS, so that a change to any of them
    builds anew. The hash is of the four as a JSON list, as the role has always computed
    it: another key would build every cached kernel again."""
    data = json.dumps([recipe, source_id, version, options])
    return hashlib.sha256(data.encode("utf-8")).hexdigest()[:12]


def built_release(kernelrelease: str, version: str) -> str:
    """The release a build names itself: KERNELRELEASE (the base64 content of the build's
    kernelrelease file, as slurp reads it) stripped, or VERSION when that is empty, as
    when check mode only predicts the build."""
    encoded = _text(kernelrelease, "guest_kernel_built_release")
    try:
        release = base64.b64decode(encoded).decode("utf-8").strip()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise AnsibleFilterError(
            f"guest_kernel_built_release: {encoded!r} is not a base64 kernel release ({exc})"
        ) from exc
    return release or version


class FilterModule:
    def filters(self):
        return {
            "guest_kernel_versioned_package": versioned_package,
            "guest_kernel_package_release": package_release,
            "guest_kernel_packages": packages,
            "guest_kernel_module_files": module_files,
            "guest_kernel_apt_fields": apt_fields,
            "guest_kernel_build_source": build_source,
            "guest_kernel_build_version": build_version,
            "guest_kernel_build_key": build_key,
            "guest_kernel_built_release": built_release,
        }
