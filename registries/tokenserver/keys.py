"""Signing keys for registry tokens: generated, rotated and retired here, always with an audit event."""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import NameOID
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from portal import audit
from portal.audit import AuditAction
from registries.models import TokenSigningKey

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
# Registries check the certificate's validity when they verify an x5c chain; rotate well before this.
CERTIFICATE_DAYS = 3650


class SigningKeyError(Exception):
    """A key operation that cannot be done (no key yet, unknown kid, retiring the active key)."""


def libtrust_kid(public_key: PublicKeyTypes) -> str:
    """The key id distribution 2.x looks up: base32 of 240 bits of sha256(SPKI), not RFC 7638."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    return ":".join(b32[i : i + 4] for i in range(0, 48, 4))


def _new_private_key(algorithm: str) -> PrivateKey:
    if algorithm == TokenSigningKey.Algorithm.RS256:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    # The curve must match the algorithm: distribution rejects ES256 over P-384.
    return ec.generate_private_key(ec.SECP256R1())


def _certificate(key: PrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Customs registry token signer")])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))  # clock skew between us and the registry
        .not_valid_after(now + timedelta(days=CERTIFICATE_DAYS))
        # A CA cert: the registry uses the bundle as an x509 root pool for the x5c header.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def _build(algorithm: str) -> TokenSigningKey:
    key = _new_private_key(algorithm)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    certificate = _certificate(key).public_bytes(serialization.Encoding.PEM).decode()
    return TokenSigningKey(
        algorithm=algorithm,
        private_key=pem,
        certificate=certificate,
        kid=libtrust_kid(key.public_key()),
        active=True,
    )


def generate(*, algorithm: str = TokenSigningKey.Algorithm.ES256, actor: User | None) -> TokenSigningKey:
    """The first signing key. Refused when one is active: that is what rotate() is for."""
    with transaction.atomic():
        if TokenSigningKey.objects.filter(active=True).exists():
            raise SigningKeyError("a signing key is already active; use rotate")
        signing_key = _build(algorithm)
        signing_key.save()
        audit.record(actor, AuditAction.TOKEN_SIGNING_KEY_CREATED, target=signing_key, kid=signing_key.kid)
    forget_signer()
    return signing_key


def rotate(*, algorithm: str = TokenSigningKey.Algorithm.ES256, actor: User | None) -> TokenSigningKey:
    """A new active key; the old one stays in the bundle (and valid) until retired."""
    with transaction.atomic():
        previous = TokenSigningKey.objects.select_for_update().filter(active=True).first()
        if previous:
            previous.active = False
            previous.save(update_fields=["active"])
        signing_key = _build(algorithm)
        signing_key.save()
        audit.record(
            actor,
            AuditAction.TOKEN_SIGNING_KEY_ROTATED,
            target=signing_key,
            kid=signing_key.kid,
            previous=previous.kid if previous else None,
        )
    forget_signer()
    return signing_key


def retire(kid: str, *, actor: User | None) -> TokenSigningKey:
    """Drop a key from the bundle; tokens it signed stop verifying once registries reload."""
    with transaction.atomic():
        signing_key = TokenSigningKey.objects.select_for_update().filter(kid=kid).first()
        if signing_key is None:
            raise SigningKeyError(f"no signing key {kid}")
        if signing_key.active:
            raise SigningKeyError("that key is active; rotate first, then retire it")
        if signing_key.retired_at is None:
            signing_key.retired_at = timezone.now()
            signing_key.save(update_fields=["retired_at"])
            audit.record(actor, AuditAction.TOKEN_SIGNING_KEY_RETIRED, target=signing_key, kid=kid)
    return signing_key


def published() -> list[TokenSigningKey]:
    """Keys registries must trust: the active one and every rotated-out key not yet retired."""
    return list(TokenSigningKey.objects.filter(retired_at=None).order_by("created_at"))


def bundle() -> str:
    """The PEM certificate bundle for the registry's auth.token.rootcertbundle."""
    return "".join(signing_key.certificate for signing_key in published())


def active() -> TokenSigningKey | None:
    return TokenSigningKey.objects.filter(active=True).first()


@dataclass(frozen=True)
class Signer:
    """The active key, ready to sign: parsed private key and x5c certificate, no database needed."""

    kid: str
    algorithm: str
    private_key: PrivateKey
    x5c: str


# Every token request signs; reading, decrypting and parsing the key each time costs more than the
# signature. A rotation reaches other processes within this many seconds, which is safe: the old
# key stays published (and trusted by registries) until it is retired, long after.
SIGNER_CACHE_SECONDS = 30.0
_signer_cache: tuple[Signer | None, float] = (None, 0.0)


def signer() -> Signer | None:
    """The active key as a Signer, cached per process for SIGNER_CACHE_SECONDS."""
    global _signer_cache
    cached, loaded_at = _signer_cache
    if cached is not None and time.monotonic() - loaded_at < SIGNER_CACHE_SECONDS:
        return cached
    signing_key = active()
    fresh = (
        Signer(
            kid=signing_key.kid,
            algorithm=signing_key.algorithm,
            private_key=load_private_key(signing_key.private_key),
            x5c=certificate_der_b64(signing_key),
        )
        if signing_key
        else None
    )
    _signer_cache = (fresh, time.monotonic())
    return fresh


def forget_signer() -> None:
    """Drop this process's cached signer (after a rotation here, and in tests)."""
    global _signer_cache
    _signer_cache = (None, 0.0)


@lru_cache(maxsize=8)
def load_private_key(pem: str) -> PrivateKey:
    """Parsed once per process and key: parsing an RSA key costs more than signing with it."""
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise SigningKeyError("stored signing key is neither EC nor RSA")
    return key


def certificate_der_b64(signing_key: TokenSigningKey) -> str:
    """The certificate for the JWT's x5c header: standard base64 of DER (2.8 refuses URL-safe)."""
    certificate = x509.load_pem_x509_certificate(signing_key.certificate.encode())
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()
