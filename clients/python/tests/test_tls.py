"""TLS and mutual TLS: a private CA, a server certificate for 127.0.0.1, a client one."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import Server
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import mnemo
from mnemo import Mnemo


def _cert(
    name: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None, ca: bool
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    issuer_name, issuer_key = issuer or (subject, key)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        b = b.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return b.sign(issuer_key, hashes.SHA256())


def _write(dir: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    c, k = dir / f"{name}.pem", dir / f"{name}.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return c, k


def test_mutual_tls(tmp_path: Path) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("mnemo test CA", ca_key, None, ca=True)
    ca_pem, _ = _write(tmp_path, "ca", ca, ca_key)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_pem, server_key_pem = _write(
        tmp_path, "server", _cert("localhost", server_key, (ca.subject, ca_key), ca=False), server_key
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_pem, client_key_pem = _write(
        tmp_path, "client", _cert("client", client_key, (ca.subject, ca_key), ca=False), client_key
    )
    config = tmp_path / "mnemo.toml"
    config.write_text(f'[tls]\ncert = "{server_pem}"\nkey = "{server_key_pem}"\nclient_ca = "{ca_pem}"\n')
    tls: dict[str, Any] = {"tls_ca": ca_pem, "tls_cert": client_pem, "tls_key": client_key_pem}
    server = Server(tmp_path / "data", args=["--config", str(config)], probe_tls=tls)
    try:
        v = np.ones(8, dtype=np.float32)
        with Mnemo(f"https://{server.address}", **tls) as m:
            m.spaces.create("t", 8)
            m.remember("t", "over tls", v)
            with m.session("t") as s:
                s.observe("streamed over tls", v)
            assert {h.content for h in m.recall("t", v, k=5)} == {"over tls", "streamed over tls"}
        # No client certificate, or a plain-text client: refused.
        with Mnemo(f"https://{server.address}", tls_ca=ca_pem, timeout=5) as no_cert, pytest.raises(mnemo.MnemoError):
            no_cert.stats()
        with Mnemo(server.address, timeout=5) as plain, pytest.raises(mnemo.MnemoError):
            plain.stats()
        with pytest.raises(ValueError):
            Mnemo(f"https://{server.address}", tls_ca=ca_pem, tls_cert=client_pem)
    finally:
        server.stop()
