"""A real OpenLDAP ``slapd`` for the sign-in tests: started on a free port with a generated
configuration (mdb database, memberof overlay, an attribute ``sAMAccountName`` as Active
Directory names it), loaded with ``tests/auth/directory.ldif`` through ``ldapadd``, stopped at
the end of the session. A test module takes it with
``from tests.ldap_server import slapd_fixture  # noqa: F401`` and a ``slapd`` argument.

Skipped when slapd or ldapadd is missing — a failure under ``SAE_REQUIRE_ALL=1``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require

SLAPD = os.environ.get("SAE_SLAPD", "/usr/sbin/slapd")
LDIF = Path(__file__).parent / "auth" / "directory.ldif"
BASE = "dc=mairie,dc=test"
ROOT_DN = f"cn=admin,{BASE}"
ROOT_PASSWORD = "root-secret"  # noqa: S105 - a throw-away test directory

# Active Directory's attribute (its OID), so that AD's filter (sAMAccountName={login}) runs.
SAM_SCHEMA = """\
attributetype ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.4203.666.100.1 NAME 'samAccount' AUXILIARY MAY sAMAccountName )
"""


@dataclass(frozen=True)
class Directory:
    """A running test directory: ``url`` (ldap://, StartTLS offered) and ``ldaps_url``, both
    with a certificate for 127.0.0.1 issued by the test CA in ``ca_file``."""

    url: str
    ldaps_url: str
    ca_file: Path
    base: str
    root_dn: str
    root_password: str


def _certificates(tmp: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for 127.0.0.1 (PEM files: CA, certificate, key)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "AC de test de la mairie")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = tmp / "ca.pem", tmp / "server.pem", tmp / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return ca_file, cert_file, key_file


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _config(tmp: Path, schema_dir: Path, module_dir: Path) -> str:
    schemas = [schema_dir / f"{n}.schema" for n in ("core", "cosine", "inetorgperson", "nis")]
    includes = "\n".join(f"include {path}" for path in [*schemas, tmp / "sam.schema"])
    return f"""\
{includes}
pidfile {tmp / "slapd.pid"}
TLSCACertificateFile {tmp / "ca.pem"}
TLSCertificateFile {tmp / "server.pem"}
TLSCertificateKeyFile {tmp / "server.key"}
modulepath {module_dir}
moduleload back_mdb
moduleload memberof

# Like many servers in the field, take a bind with a DN and no password as an anonymous
# bind, and answer it with success: SAE must never send one.
allow bind_anon_dn

database mdb
maxsize 104857600
suffix "{BASE}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PASSWORD}
directory {tmp / "db"}
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint true

access to attrs=userPassword
  by self write
  by anonymous auth
  by * none
access to *
  by users read
  by * none
"""


@pytest.fixture(scope="session", name="slapd")
def slapd_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Directory]:
    """A real slapd on 127.0.0.1 and a free port, with the test users and groups."""
    require(Path(SLAPD).is_file(), f"{SLAPD} not installed (Debian package slapd)")
    ldapadd = shutil.which("ldapadd")
    require(ldapadd, "ldapadd not installed (Debian package ldap-utils)")
    assert ldapadd is not None
    schema_dir = Path("/etc/ldap/schema")
    module_dir = Path("/usr/lib/ldap")
    require((schema_dir / "inetorgperson.schema").is_file(), "OpenLDAP schemas not installed")

    tmp = tmp_path_factory.mktemp("slapd")
    (tmp / "db").mkdir()
    (tmp / "sam.schema").write_text(SAM_SCHEMA)
    ca_file, _, _ = _certificates(tmp)
    conf = tmp / "slapd.conf"
    conf.write_text(_config(tmp, schema_dir, module_dir))
    check = subprocess.run(  # noqa: S603 - fixed arguments
        [SLAPD, "-Tt", "-u", "-f", str(conf)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr

    port, tls_port = _free_port(), _free_port()
    url = f"ldap://127.0.0.1:{port}"
    ldaps_url = f"ldaps://127.0.0.1:{tls_port}"
    log = (tmp / "slapd.log").open("w")
    # -d keeps slapd in the foreground (a child of this process, stopped below).
    process = subprocess.Popen(  # noqa: S603 - fixed arguments
        [SLAPD, "-f", str(conf), "-h", f"{url}/ {ldaps_url}/", "-d", "256"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (tmp / "slapd.log").read_text()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "slapd did not listen within 30 s"
                time.sleep(0.1)
        loaded = subprocess.run(  # noqa: S603 - fixed arguments
            [ldapadd, "-x", "-H", url, "-D", ROOT_DN, "-w", ROOT_PASSWORD, "-f", str(LDIF)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert loaded.returncode == 0, loaded.stderr
        yield Directory(
            url=url,
            ldaps_url=ldaps_url,
            ca_file=ca_file,
            base=BASE,
            root_dn=ROOT_DN,
            root_password=ROOT_PASSWORD,
        )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
