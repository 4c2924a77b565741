"""The cloud's own CA and server certificate (``stratus.core.tls``) and what clients verify
with (``stratus.core.http.client_verify``): a real TLS handshake on loopback."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509

from stratus.core.http import client_verify
from stratus.core.tls import ensure_certificates


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_ca_and_a_server_certificate_for_every_name_keys_private(tmp_path: Path) -> None:
    files = ensure_certificates(tmp_path / "tls", ["localhost", "127.0.0.1", "::1"])
    assert _mode(tmp_path / "tls") == 0o700
    assert _mode(files.key) == 0o600
    assert _mode(tmp_path / "tls" / "ca-key.pem") == 0o600
    assert _mode(files.cert) == 0o644 and _mode(files.ca) == 0o644
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(names.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}


def test_kept_across_starts_and_the_server_certificate_reissued_for_a_new_name(
        tmp_path: Path) -> None:
    first = ensure_certificates(tmp_path, ["localhost"])
    ca, cert = first.ca.read_bytes(), first.cert.read_bytes()
    again = ensure_certificates(tmp_path, ["localhost"])
    assert (again.ca.read_bytes(), again.cert.read_bytes()) == (ca, cert)
    wider = ensure_certificates(tmp_path, ["localhost", "cloud.example.org"])
    assert wider.ca.read_bytes() == ca  # clients that trust the CA keep trusting the cloud
    assert wider.cert.read_bytes() != cert
    names = x509.load_pem_x509_certificate(wider.cert.read_bytes()).extensions \
        .get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(names.get_values_for_type(x509.DNSName)) == ["cloud.example.org", "localhost"]


async def _handshake(port: int, verify: ssl.SSLContext | bool) -> None:
    context = verify if isinstance(verify, ssl.SSLContext) else ssl.create_default_context()
    _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context,
                                                    server_hostname="127.0.0.1")
    writer.close()
    await writer.wait_closed()


async def test_a_client_verifies_the_server_with_the_ca_and_refuses_it_without(
        tmp_path: Path) -> None:
    files = ensure_certificates(tmp_path, ["127.0.0.1"])
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(files.cert, files.key)

    async def answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    try:
        await _handshake(port, client_verify(files.ca))
        # Without a CA of its own: the system's authorities, loaded once per process.
        assert client_verify(None) is client_verify(None)
        with pytest.raises(ssl.SSLCertVerificationError):
            await _handshake(port, client_verify(None))
        other = ensure_certificates(tmp_path / "other", ["127.0.0.1"])
        with pytest.raises(ssl.SSLCertVerificationError):  # another cloud's CA
            await _handshake(port, client_verify(other.ca))
    finally:
        server.close()
        await server.wait_closed()
