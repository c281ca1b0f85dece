"""Issue 17's encrypted migration on the embedded lab: a guest keeps a marker in its
memory; a capture of the experiment network during a plain migration shows it, one during
a TLS migration does not; a destination whose certificate comes from another CA, or does
not carry the name asked for, fails the migration with the reason and the source runs on."""

from __future__ import annotations

import datetime
import ipaddress
import json
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from labrun import ROOT, heartbeat_advances, hmp, run_module, run_playbooks, stop_vms

pytestmark = pytest.mark.lab

LATEST = ROOT / "results" / "latest" / "run.json"
UNPROFILED = {"migration_profile": False}
TLS_DIR = Path("/etc/qmigrate/tls")
# What the guest keeps in its memory (qmigrate.marker= on its kernel command line)
MARKER = f"qmigrate-marker-{secrets.token_hex(8)}"


def marked_guest() -> dict:
    append = yaml.safe_load((ROOT / "roles" / "vm" / "defaults" / "main.yml").read_text())[
        "vm_append"
    ]
    return {"vm_append": f"{append} qmigrate.marker={MARKER}"}


def latest_run() -> dict:
    return json.loads(LATEST.read_text())


class Capture:
    """tcpdump on the destination's experiment NIC, in its namespace, of the migration
    port's segments, whole, to a file; stopped by its pid."""

    def __init__(self, path: Path, host: str = "labdst") -> None:
        self.path = path
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", host, "tcpdump", "-i", "ens1f0", "-s", "0", "-U", "-n",
             "-w", str(path), "tcp port 4444"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        # tcpdump says "listening on ..." once it captures
        deadline = time.monotonic() + 10
        line = ""
        while "listening on" not in line and time.monotonic() < deadline:
            line = self.proc.stderr.readline()
        assert "listening on" in line, line

    def stop(self) -> bytes:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        return self.path.read_bytes()


@pytest.fixture
def fresh_vms(provisioned):
    stop_vms()
    yield
    stop_vms()


def captured(tmp_path: Path, name: str, **extra) -> tuple[bytes, dict, object]:
    capture = Capture(tmp_path / f"{name}.pcap")
    try:
        run = run_playbooks("migrate.yml", extra_vars={**UNPROFILED, **marked_guest(), **extra})
    finally:
        stream = capture.stop()
    return stream, latest_run(), run


def test_a_tls_migration_hides_the_guests_memory_that_a_plain_one_shows(fresh_vms, tmp_path):
    plain, record, run = captured(tmp_path, "plain")
    assert run.rc == 0, run.text[-4000:]
    assert record["status"] == "completed" and record["tls"] is False

    assert MARKER.encode() in plain

    # Back the other way, encrypted: the destination is labsrc, the capture still labdst's
    # NIC, which every segment between the two crosses.
    encrypted, record, run = captured(tmp_path, "tls", migration_tls=True, qmigrate_reverse=True)
    assert run.rc == 0, run.text[-4000:]
    assert record["status"] == "completed" and record["tls"] is True
    assert all(record["verification"].values()), record["verification"]
    assert record["parameters"]["tls-creds"] == "qmigrate-tls-client"

    assert len(encrypted) > 4_000_000  # the guest's memory went by
    assert MARKER.encode() not in encrypted
    keys = [
        TLS_DIR / h / f"{end}-key.pem" for h in ("labsrc", "labdst") for end in ("server", "client")
    ]
    assert all(k.stat().st_mode & 0o777 == 0o600 for k in keys)


def rogue_credentials(host: str) -> None:
    """HOST's credentials replaced by ones from a CA of their own, naming HOST as the
    generated ones do."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rogue CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(host), x509.IPAddress(ipaddress.ip_address("10.10.1.2"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    directory = TLS_DIR / host
    (directory / "ca-cert.pem").write_bytes(ca.public_bytes(pem))
    for end in ("server", "client"):
        (directory / f"{end}-cert.pem").write_bytes(cert.public_bytes(pem))
        (directory / f"{end}-key.pem").write_bytes(key_pem)
        (directory / f"{end}-key.pem").chmod(0o600)


def assert_refused_and_source_runs(run, says: str) -> None:
    assert run.rc != 0
    assert says in run.text, run.text[-3000:]
    assert "VM status: running" in hmp("labsrc", "info status")
    assert heartbeat_advances("labsrc")
    assert latest_run()["status"] == "failed"


def test_a_wrong_ca_or_hostname_fails_the_migration_and_the_source_runs_on(fresh_vms):
    # The right credentials first (the migration role's own step), then labdst's from
    # another CA, used as they are (migration_tls_generate false): a PKI of one's own
    # gone wrong.
    made = run_module(
        "labsrc",
        "ansible.builtin.include_role",
        {"name": "migration", "tasks_from": "tls"},
        extra_vars={"migration_destination": "labdst"},
    )
    assert made.rc == 0, made.text[-4000:]
    saved = TLS_DIR / "labdst.saved"
    shutil.rmtree(saved, ignore_errors=True)
    shutil.copytree(TLS_DIR / "labdst", saved)
    try:
        rogue_credentials("labdst")
        run = run_playbooks(
            "migrate.yml",
            extra_vars={**UNPROFILED, "migration_tls": True, "migration_tls_generate": False},
        )
        assert_refused_and_source_runs(run, "TLS: both hosts' certificates must come from one CA")
    finally:
        shutil.rmtree(TLS_DIR / "labdst")
        saved.rename(TLS_DIR / "labdst")

    # The right CA, but a name the destination's certificate does not carry
    run = run_playbooks(
        "migrate.yml",
        extra_vars={**UNPROFILED, "migration_tls": True, "migration_tls_hostname": "wrong.lab"},
    )
    assert_refused_and_source_runs(run, "the destination's must name wrong.lab")
