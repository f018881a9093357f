"""TLS for a phone on the LAN: a certificate the operator gives, or one made here to try it out.

A page served over plain http from any address but loopback is not a secure context: the
browser gives it no camera (getUserMedia) and no cross-origin isolation. Over https it
gets both, once the browser trusts the certificate.

`strata serve --tls-self-signed` makes a self-signed certificate for the names and
addresses browsers use to reach the edge. Browsers warn about it; the SHA-256 fingerprint
the command prints is what a person compares with the one the browser shows before
accepting it. The certificate and its key (readable by their owner only) are kept in
build/tls/ and reused while they cover the same names and have a day left, so a phone
accepts the certificate once, not at every start.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import ssl
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 90  # a trial certificate; browsers cap trusted ones at 398 days anyway
CERT_FILE, KEY_FILE = "self-signed.pem", "self-signed.key"


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the certificate (DER), as browsers show it: 32 hex pairs joined by ':'."""
    digest = hashlib.sha256(x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER))
    return ":".join(f"{byte:02X}" for byte in digest.digest())


def check_pair(cert: Path, key: Path) -> str:
    """The fingerprint of a certificate whose key is `key` (PEM files); ValueError saying
    what is wrong if they cannot serve TLS (missing, unreadable, not a matching pair)."""
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
        return fingerprint(cert.read_bytes())
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ValueError(f"cannot use {cert} with key {key} for TLS: {exc}") from None


def _subject_names(names: Iterable[str]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    for name in dict.fromkeys(name.strip("[]") for name in names):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return entries


def _reusable(cert: Path, key: Path, wanted: list[x509.GeneralName]) -> bool:
    if not (cert.is_file() and key.is_file()):
        return False
    try:
        existing = x509.load_pem_x509_certificate(cert.read_bytes())
        names = existing.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    left = existing.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)
    return set(wanted) <= set(names) and left > datetime.timedelta(days=1)


def self_signed(names: Iterable[str], folder: Path) -> tuple[Path, Path]:
    """(certificate, key) PEM files of a self-signed certificate for `names` (host names,
    or addresses, IPv6 with or without brackets), made in `folder` unless one there
    already covers them for at least a day more. ECDSA P-256, valid VALID_DAYS."""
    wanted = _subject_names(names)
    cert_path, key_path = folder / CERT_FILE, folder / KEY_FILE
    if _reusable(cert_path, key_path, wanted):
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Strata edge (self-signed)")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(wanted), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    key_path.unlink(missing_ok=True)  # created anew, so that it is never readable by others
    with open(key_path, "wb", opener=lambda path, flags: os.open(path, flags, 0o600)) as file:
        file.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
