"""How guest_kernel resolves a kernel package, names a build and its cache key, and which
module files a guest loads (for guest_kernel and guest_image alike), from what apt-cache
and modprobe print."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from filter_plugins.kernel import (
    FilterModule,
    apt_fields,
    build_key,
    build_source,
    build_version,
    built_release,
    module_files,
    package_release,
    packages,
    versioned_package,
)

ROLES = Path(__file__).resolve().parents[3] / "roles"

# `apt-cache depends linux-image-cloud-amd64` on Debian bookworm.
DEBIAN_CLOUD_DEPENDS = [
    "linux-image-cloud-amd64",
    "  Depends: linux-image-6.1.0-28-cloud-amd64",
]
# `apt-cache depends linux-image-6.1.0-28-cloud-amd64`: an alternative, a virtual package
# with its providers, and no linux-modules package (Debian ships the modules in the image).
DEBIAN_IMAGE_DEPENDS = [
    "linux-image-6.1.0-28-cloud-amd64",
    "  Depends: kmod",
    "  Depends: linux-base",
    " |Depends: initramfs-tools",
    "  Depends: <linux-initramfs-tool>",
    "    dracut",
    "    initramfs-tools",
    "  Recommends: apparmor",
    "  Suggests: linux-doc-6.1",
    "  Breaks: <initramfs-tools>",
]
# `apt-cache depends linux-image-generic` on Ubuntu noble.
UBUNTU_GENERIC_DEPENDS = [
    "linux-image-generic",
    "  Depends: linux-image-6.8.0-49-generic",
    "  Depends: linux-firmware",
    "  Depends: intel-microcode",
    "  Depends: amd64-microcode",
    "  Recommends: thermald",
]
# `apt-cache depends linux-image-6.8.0-49-generic`: the modules are a package of their own.
UBUNTU_IMAGE_DEPENDS = [
    "linux-image-6.8.0-49-generic",
    "  Depends: linux-base",
    "  Depends: linux-modules-6.8.0-49-generic",
    " |Recommends: grub-pc",
    "  Recommends: grub-efi-amd64",
    "  Recommends: linux-modules-extra-6.8.0-49-generic",
    "  Suggests: fdutils",
    "  Conflicts: linux-image-unsigned-6.8.0-49-generic",
]

# `apt-cache show --no-all-versions linux-source-5.10` from bullseye.
SHA256 = "3f1c0e5d8b7a69584736251403f2e1d0c9b8a7968574635241302f1e0d9c8b7a"
LINUX_SOURCE_SHOW = f"""Package: linux-source-5.10
Source: linux
Version: 5.10.223-1
Installed-Size: 128426
Maintainer: Debian Kernel Team <debian-kernel@lists.debian.org>
Architecture: all
Depends: binutils, xz-utils
Recommends: libc6-dev | libc-dev, gcc, make, bc, bison, flex, libssl-dev, libelf-dev
Description-en: Linux kernel source for version 5.10 with Debian patches
 This package provides source code for the Linux kernel version 5.10.
Description-md5: 53c0b7bb5e0bdd9c1d4c9e6fb0a6d7c3
Section: kernel
Priority: optional
Filename: pool/main/l/linux/linux-source-5.10_5.10.223-1_all.deb
Size: 123456789
MD5sum: 2d5b4a1ce7f4f6f5c1a7b9e2f3d4c5b6
SHA256: {SHA256}

"""
FIELDS = {
    "Version": "5.10.223-1",
    "Filename": "pool/main/l/linux/linux-source-5.10_5.10.223-1_all.deb",
    "SHA256": SHA256,
}
SOURCES = "/var/cache/qmigrate/kernel/sources"
TARBALL_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
SEED_OPTIONS = [
    "CONFIG_MEMCG=y",
    "CONFIG_ATA_PIIX=y",
    "CONFIG_SATA_AHCI=y",
    "CONFIG_BLK_DEV_SD=y",
    "CONFIG_EXT4_FS=y",
    "CONFIG_VIRTIO_PCI=y",
    "CONFIG_VIRTIO_NET=y",
    "CONFIG_E1000=y",
    "CONFIG_SERIAL_8250_CONSOLE=y",
]

MODULES = "/var/cache/qmigrate/kernel/linux-image-6.1.0-28-cloud-amd64/root/lib/modules"
KERNEL = f"{MODULES}/6.1.0-28-cloud-amd64/kernel"


def source(tarball: str = "", fields: dict | None = None, checksum: str = "") -> dict:
    return build_source(
        tarball,
        FIELDS if fields is None else fields,
        SOURCES,
        checksum,
        "linux-source-5.10",
        "bullseye",
    )


@pytest.mark.parametrize(
    ("requested", "depends", "package"),
    [
        # Debian's default, and an explicit metapackage whose first versioned image wins
        ("linux-image-cloud-amd64", DEBIAN_CLOUD_DEPENDS, "linux-image-6.1.0-28-cloud-amd64"),
        (
            "linux-image-amd64",
            [
                "linux-image-amd64",
                "  Depends: linux-image-6.1.0-28-amd64",
                "  Depends: linux-image-6.1.0-27-amd64",
            ],
            "linux-image-6.1.0-28-amd64",
        ),
        ("linux-image-generic", UBUNTU_GENERIC_DEPENDS, "linux-image-6.8.0-49-generic"),
        # a versioned package is itself, whatever it depends on
        (
            "linux-image-6.1.0-28-cloud-amd64",
            DEBIAN_IMAGE_DEPENDS,
            "linux-image-6.1.0-28-cloud-amd64",
        ),
        ("linux-image-unsigned-6.8.0-49-generic", [], "linux-image-unsigned-6.8.0-49-generic"),
        (
            "linux-image-6.1.0-28-cloud-amd64-unsigned",
            [],
            "linux-image-6.1.0-28-cloud-amd64-unsigned",
        ),
    ],
)
def test_a_metapackage_resolves_to_the_versioned_image_it_depends_on(requested, depends, package):
    assert versioned_package(requested, depends) == package


def test_only_a_plain_depends_on_a_versioned_image_resolves_a_metapackage():
    depends = [
        "linux-image-virtual",
        " |Depends: linux-image-6.8.0-49-generic",  # an alternative
        "  Depends: <linux-image>",  # a virtual package
        "    linux-image-6.8.0-49-generic",  # ... and its provider
        "  Recommends: linux-image-6.8.0-48-generic",
        "  Depends: linux-image-extra-virtual",
    ]

    assert versioned_package("linux-image-virtual", depends) == ""


@pytest.mark.parametrize(
    "depends",
    [
        [],  # apt-cache depends failed: "E: No packages found", nothing on stdout
        ["linux-headers-amd64", "  Depends: linux-headers-6.1.0-28-amd64"],
    ],
)
def test_a_package_behind_no_versioned_image_resolves_to_nothing(depends):
    assert versioned_package("linux-headers-amd64", depends) == ""


def test_depends_must_be_the_lines_not_the_whole_output():
    with pytest.raises(AnsibleFilterError, match="stdout_lines"):
        versioned_package("linux-image-cloud-amd64", "\n".join(DEBIAN_CLOUD_DEPENDS))


@pytest.mark.parametrize(
    ("package", "release"),
    [
        ("linux-image-6.1.0-28-cloud-amd64", "6.1.0-28-cloud-amd64"),
        ("linux-image-6.1.0-28-cloud-amd64-unsigned", "6.1.0-28-cloud-amd64"),
        ("linux-image-6.8.0-49-generic", "6.8.0-49-generic"),
        ("linux-image-unsigned-6.8.0-49-generic", "6.8.0-49-generic"),
        ("", ""),  # unresolved: the role's check names the package
    ],
)
def test_a_versioned_package_names_the_release_it_installs(package, release):
    assert package_release(package) == release


def test_ubuntu_downloads_the_modules_package_beside_the_image():
    assert packages("linux-image-6.8.0-49-generic", UBUNTU_IMAGE_DEPENDS) == [
        "linux-image-6.8.0-49-generic",
        "linux-modules-6.8.0-49-generic",
    ]
    assert packages(
        "linux-image-unsigned-6.8.0-49-generic",
        ["linux-image-unsigned-6.8.0-49-generic", "  Depends: linux-modules-6.8.0-49-generic"],
    ) == ["linux-image-unsigned-6.8.0-49-generic", "linux-modules-6.8.0-49-generic"]


def test_debian_downloads_the_image_alone():
    assert packages("linux-image-6.1.0-28-cloud-amd64", DEBIAN_IMAGE_DEPENDS) == [
        "linux-image-6.1.0-28-cloud-amd64"
    ]


def test_only_the_modules_of_this_release_are_downloaded():
    depends = [
        "linux-image-6.8.0-49-generic",
        "  Depends: linux-modules-6.8.0-48-generic",
        "  Depends: linux-modules-extra-6.8.0-49-generic",
        " |Depends: linux-modules-6.8.0-49-generic",
    ]

    assert packages("linux-image-6.8.0-49-generic", depends) == ["linux-image-6.8.0-49-generic"]


def test_modprobe_lists_the_files_to_load_in_order_each_once_without_builtins():
    # `modprobe --show-depends --all ata_piix ahci sd_mod ext4`: libata and the SCSI
    # core come again for ahci; crc16 is built in; a module may carry options.
    lines = [
        f"insmod {KERNEL}/drivers/scsi/scsi_common.ko ",
        f"insmod {KERNEL}/drivers/scsi/scsi_mod.ko ",
        f"insmod {KERNEL}/drivers/ata/libata.ko ",
        f"insmod {KERNEL}/drivers/ata/ata_piix.ko ",
        f"insmod {KERNEL}/drivers/scsi/scsi_common.ko ",
        f"insmod {KERNEL}/drivers/scsi/scsi_mod.ko ",
        f"insmod {KERNEL}/drivers/ata/libata.ko ",
        f"insmod {KERNEL}/drivers/ata/libahci.ko ",
        f"insmod {KERNEL}/drivers/ata/ahci.ko mobile_lpm_policy=0",
        f"insmod {KERNEL}/drivers/scsi/sd_mod.ko ",
        "builtin crc16",
        f"insmod {KERNEL}/fs/ext4/ext4.ko ",
    ]

    assert module_files(lines) == [
        f"{KERNEL}/drivers/scsi/scsi_common.ko",
        f"{KERNEL}/drivers/scsi/scsi_mod.ko",
        f"{KERNEL}/drivers/ata/libata.ko",
        f"{KERNEL}/drivers/ata/ata_piix.ko",
        f"{KERNEL}/drivers/ata/libahci.ko",
        f"{KERNEL}/drivers/ata/ahci.ko",
        f"{KERNEL}/drivers/scsi/sd_mod.ko",
        f"{KERNEL}/fs/ext4/ext4.ko",
    ]


def test_ubuntu_compressed_modules_are_files_like_any_other():
    root = "/var/cache/qmigrate/kernel/linux-image-6.8.0-49-generic/root"
    kernel = f"{root}/lib/modules/6.8.0-49-generic/kernel"
    lines = [
        f"insmod {kernel}/net/core/failover.ko.zst ",
        f"insmod {kernel}/drivers/net/virtio_net.ko.zst ",
    ]

    assert module_files(lines) == [
        f"{kernel}/net/core/failover.ko.zst",
        f"{kernel}/drivers/net/virtio_net.ko.zst",
    ]


@pytest.mark.parametrize(
    "lines",
    [
        ["builtin virtio_net", "builtin virtio_pci"],  # the seed's build: all built in
        [],  # modprobe skipped (no modules asked for, or check mode before the kernel exists)
    ],
)
def test_a_kernel_with_everything_built_in_loads_no_files(lines):
    assert module_files(lines) == []


def test_module_files_read_the_lines_not_the_whole_output():
    with pytest.raises(AnsibleFilterError, match="guest_kernel_module_files"):
        module_files(f"insmod {KERNEL}/fs/ext4/ext4.ko \n")
    with pytest.raises(AnsibleFilterError, match="NoneType"):
        module_files(None)


def test_the_source_package_entry_gives_version_file_and_checksum():
    assert apt_fields(LINUX_SOURCE_SHOW) == FIELDS


@pytest.mark.parametrize(
    "stdout",
    [
        "",  # apt-cache show failed (no such package) or was skipped (a tarball build)
        "Package: linux-source-5.10\nDescription-en: Version: 5.10 with Debian patches\n",
    ],
)
def test_an_entry_without_the_fields_gives_none(stdout):
    assert apt_fields(stdout) == {}


def test_apt_fields_read_the_whole_output():
    with pytest.raises(AnsibleFilterError, match="guest_kernel_apt_fields"):
        apt_fields(LINUX_SOURCE_SHOW.splitlines())


def test_debian_source_package_is_identified_by_the_index_checksum():
    assert source() == {
        "kind": "package",
        "path": f"{SOURCES}/linux-source-5.10_5.10.223-1_all.deb",
        "id": f"sha256:{SHA256}",
        "label": "linux-source-5.10 5.10.223-1 from bullseye",
        "version": "5.10.223",
        "version_origin": "the package version 5.10.223-1",
    }


@pytest.mark.parametrize(
    ("version", "held"),
    [
        ("1:5.10.0-9", "5.10.0"),
        ("5.10-1", "5.10"),
        ("5.10.223-1~deb10u1", "5.10.223"),
        ("unknown", ""),
    ],
)
def test_the_package_version_gives_the_kernel_version(version, held):
    assert source(fields={**FIELDS, "Version": version})["version"] == held


def test_a_package_missing_from_the_index_names_no_file():
    # The role's check (three fields) fails on this before anything uses it.
    assert source(fields={}) == {
        "kind": "package",
        "path": f"{SOURCES}/",
        "id": "sha256:",
        "label": "linux-source-5.10  from bullseye",
        "version": "",
        "version_origin": "the package version ",
    }


def test_a_tarball_url_is_downloaded_into_the_sources_and_identified_by_the_url():
    url = "https://cdn.kernel.org/pub/linux/kernel/v5.x/linux-5.10.54.tar.xz"

    assert source(url, fields={}) == {
        "kind": "url",
        "path": f"{SOURCES}/linux-5.10.54.tar.xz",
        "id": url,
        "label": url,
        "version": "5.10.54",
        "version_origin": "the tarball's name",
    }
    ftp = source("ftp://ftp.example.org/pub/linux-5.10.54.tar.gz?mirror=1", fields={})
    assert (ftp["kind"], ftp["path"]) == ("url", f"{SOURCES}/linux-5.10.54.tar.gz")


def test_a_tarball_on_the_builder_is_identified_by_its_checksum():
    tarball = "/srv/src/linux-6.6.tar.xz"

    assert source(tarball, fields={}, checksum=TARBALL_SHA256) == {
        "kind": "file",
        "path": tarball,
        "id": f"sha256:{TARBALL_SHA256}",
        "label": tarball,
        "version": "6.6",
        "version_origin": "the tarball's name",
    }
    # Until stat reads it (the cache lookup runs before), the checksum is unknown.
    assert source(tarball, fields={})["id"] == "sha256:"


def test_a_tarball_named_otherwise_gives_no_version():
    assert source("/srv/src/kernel.tar.xz", fields={})["version"] == ""
    assert source("/srv/src/linux-5.10.54.zip", fields={})["version"] == ""


def test_the_source_version_is_built_when_none_is_asked_for():
    wanted = build_version("", source())

    assert wanted == {
        "version": "5.10.223",
        "version_from": "version 5.10.223 from the package version 5.10.223-1",
        "matches": False,
    }
    tarball = build_version("", source("/srv/src/linux-5.10.54.tar.gz", fields={}))
    assert tarball["version_from"] == "version 5.10.54 from the tarball's name"


@pytest.mark.parametrize(
    ("requested", "held", "matches"),
    [
        ("5.10.223", "5.10.223-1", True),
        ("5.10", "5.10-1", True),
        ("5.10.0", "5.10-1", True),  # X.Y is X.Y.0
        ("5.10", "1:5.10.0-9", True),
        ("5.10.54", "5.10.223-1", False),
        ("5.10", "5.10.223-1", False),
    ],
)
def test_an_asked_for_version_must_be_the_one_the_source_holds(requested, held, matches):
    wanted = build_version(requested, source(fields={**FIELDS, "Version": held}))

    assert wanted == {
        "version": requested,
        "version_from": f"guest_kernel_build_version {requested}",
        "matches": matches,
    }


def test_a_source_of_unknown_version_builds_none():
    # The role fails on the empty version, naming guest_kernel_build_version.
    wanted = build_version("", source("/srv/src/kernel.tar.xz", fields={}))

    assert wanted == {
        "version": "",
        "version_from": "version  from the tarball's name",
        "matches": True,
    }


@pytest.mark.parametrize(
    ("source_id", "version", "options", "key"),
    [
        # Keys the role's Jinja computed before the filter: cached builds stay cached.
        (f"sha256:{SHA256}", "5.10.223", SEED_OPTIONS, "b0c44b454fed"),
        (
            f"sha256:{SHA256}",
            "5.10.223",
            ["CONFIG_MEMCG=y", 'CONFIG_LOCALVERSION="-qm"'],
            "e9eb74f5f4aa",
        ),
        (f"sha256:{TARBALL_SHA256}", "5.10.54", SEED_OPTIONS, "534536f87ade"),
        (
            "https://cdn.kernel.org/pub/linux/kernel/v5.x/linux-5.10.54.tar.xz",
            "5.10.54",
            SEED_OPTIONS,
            "844855382cf4",
        ),
    ],
)
def test_the_cache_key_is_the_one_the_role_has_always_computed(source_id, version, options, key):
    assert build_key(1, source_id, version, options) == key


def test_any_change_of_recipe_source_version_or_options_changes_the_key():
    base = build_key(1, f"sha256:{SHA256}", "5.10.223", SEED_OPTIONS)

    assert build_key(2, f"sha256:{SHA256}", "5.10.223", SEED_OPTIONS) != base
    assert build_key(1, f"sha256:{TARBALL_SHA256}", "5.10.223", SEED_OPTIONS) != base
    assert build_key(1, f"sha256:{SHA256}", "5.10.224", SEED_OPTIONS) != base
    assert build_key(1, f"sha256:{SHA256}", "5.10.223", SEED_OPTIONS[:-1]) != base


def test_a_build_names_its_release_and_a_predicted_one_takes_the_version():
    localversion = base64.b64encode(b"5.10.223-qm\n").decode()

    assert built_release(localversion, "5.10.223") == "5.10.223-qm"
    assert built_release("", "5.10.223") == "5.10.223"  # check mode: nothing built to read
    assert built_release(base64.b64encode(b"\n").decode(), "5.10.223") == "5.10.223"


def test_a_kernelrelease_that_is_not_base64_is_named():
    with pytest.raises(AnsibleFilterError, match=r"'5\.10\.223' is not a base64 kernel release"):
        built_release("5.10.223", "5.10.223")


def test_the_roles_call_every_filter_by_its_name():
    used = {
        name
        for role in ("guest_kernel", "guest_image")
        for path in (ROLES / role).rglob("*.yml")
        for name in re.findall(r"\|\s*(guest_kernel_\w+)", path.read_text())
    }

    assert used == FilterModule().filters().keys()
