"""Key pairs: imported, or generated here with the private key handed back once.

Two types (Nova's, from microversion 2.2): ``ssh`` (an OpenSSH public key, MD5
fingerprint) and ``x509`` (a PEM certificate, SHA-1 fingerprint of its DER form; a
generated one is self-signed for the user). ``cryptography.x509`` is imported by the x509
functions, not with the module: most clouds never see an x509 key pair.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from stratus.compute.models import KeyPair
from stratus.core.db import Txn
from stratus.core.db.paging import SortKey, page
from stratus.core.exceptions import Conflict, MarkerNotFound, NotFound, ValidationError

if TYPE_CHECKING:
    from cryptography import x509

__all__ = ["SUPPORTED_TYPES", "KeyPair", "KeyPairs", "fingerprint", "generate_key_pair",
           "generate_x509", "validate_public_key", "validate_x509", "x509_fingerprint"]

SUPPORTED_TYPES = ("ssh", "x509")
#: How long a generated certificate is valid.
X509_VALIDITY = dt.timedelta(days=3650)


def fingerprint(public_key: str) -> str:
    """The key's MD5 fingerprint (``aa:bb:...``), the form Nova reports."""
    try:
        blob = base64.b64decode(public_key.split()[1], validate=True)
    except (IndexError, ValueError) as exc:
        raise ValidationError("Keypair data is invalid: not an OpenSSH public key.") from exc
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def validate_public_key(public_key: str) -> str:
    key = public_key.strip()
    try:
        serialization.load_ssh_public_key(key.encode())
    except (ValueError, TypeError, IndexError) as exc:
        raise ValidationError("Keypair data is invalid: not an OpenSSH public key.") from exc
    return key


def generate_key_pair() -> tuple[str, str]:
    """(public key in OpenSSH form, private key in OpenSSH PEM) for a new RSA-2048 pair."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    return public, pem


def _colons(hexdigest: str) -> str:
    return ":".join(hexdigest[i:i + 2] for i in range(0, len(hexdigest), 2))


def validate_x509(certificate: str) -> x509.Certificate:
    """The PEM certificate of an ``x509`` key pair, parsed."""
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificate(certificate.strip().encode())
    except ValueError as exc:
        raise ValidationError("Keypair data is invalid: not a PEM X.509 "
                              "certificate.") from exc


def x509_fingerprint(certificate: x509.Certificate) -> str:
    """SHA-1 of the certificate's DER form (``aa:bb:...``), as Nova reports it."""
    return _colons(certificate.fingerprint(hashes.SHA1()).hex())


def generate_x509(common_name: str) -> tuple[str, str]:
    """(certificate in PEM, private key in PKCS#8 PEM): RSA-2048, self-signed for
    ``common_name``."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(private.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + X509_VALIDITY)
                   .sign(private, hashes.SHA256()))
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return certificate.public_bytes(serialization.Encoding.PEM).decode(), pem


class KeyPairs:
    """A user's key pairs within one transaction."""

    def __init__(self, txn: Txn) -> None:
        self.txn = txn
        self.session = txn.session

    async def create(self, *, user_id: str, name: str, public_key: str | None,
                     key_type: str = "ssh") -> tuple[KeyPair, str | None]:
        """Import ``public_key``, or generate a pair; returns the row and any private key."""
        if key_type not in SUPPORTED_TYPES:
            raise ValidationError(f"Keypair type {key_type!r} is not supported: use ssh or "
                                  f"x509.")
        if await self.session.scalar(select(KeyPair.id).where(
                KeyPair.user_id == user_id, KeyPair.name == name)):
            raise Conflict(f"Key pair '{name}' already exists.")
        private_key = None
        if key_type == "x509":
            if public_key is None:
                public_key, private_key = generate_x509(user_id)
            else:
                public_key = public_key.strip()
            print_ = x509_fingerprint(validate_x509(public_key))
        else:
            if public_key is None:
                public_key, private_key = generate_key_pair()
            else:
                public_key = validate_public_key(public_key)
            print_ = fingerprint(public_key)
        pair = KeyPair(user_id=user_id, name=name, type=key_type, public_key=public_key,
                       fingerprint=print_)
        self.session.add(pair)
        await self.session.flush()
        return pair, private_key

    async def get(self, user_id: str, name: str) -> KeyPair:
        pair = await self.session.scalar(select(KeyPair).where(
            KeyPair.user_id == user_id, KeyPair.name == name))
        if pair is None:
            raise NotFound(f"Keypair {name} not found for user {user_id}")
        return pair

    async def list_for_user(self, user_id: str, *, limit: int | None = None,
                            marker: str | None = None) -> list[KeyPair]:
        """One page of the user's key pairs by name, paged in SQL after ``marker``."""
        try:
            found = await page(self.session, select(KeyPair).where(KeyPair.user_id == user_id),
                               sort_columns={"name": KeyPair.name}, sort=[SortKey("name")],
                               marker_id=marker, limit=limit, id_column=KeyPair.name)
        except MarkerNotFound as exc:
            raise NotFound(f"Keypair {marker} not found for user {user_id}") from exc
        return list(found.rows)

    async def delete(self, user_id: str, name: str) -> None:
        await self.session.delete(await self.get(user_id, name))
        await self.session.flush()
