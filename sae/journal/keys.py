"""The journal's signing key and time-stamping authority, as the settings configure them.

Embedded default: the SAE signing key and a built-in TSA, both created at first start under
``$SAE_DATA_DIR/keys`` and ``$SAE_DATA_DIR/tsa``. Production: ``SAE_TSA_URL`` names an external
RFC 3161 authority and ``SAE_TSA_CA_FILE`` its trust anchor(s).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from sae.config import Settings
from sae.journal.checkpoint import SigningKey
from sae.journal.errors import SigningKeyError
from sae.journal.tsa import BuiltinTSA, HttpTSA, TimestampAuthority

_lock = threading.Lock()
_cache: dict[tuple[str, str | None, str | None], JournalKeys] = {}


@dataclass(frozen=True)
class JournalKeys:
    """What sealing needs: who signs, who time-stamps, and the log's name."""

    signer: SigningKey
    tsa: TimestampAuthority
    origin: str


def load_journal_keys(settings: Settings) -> JournalKeys:
    """Load (creating on first start) the keys for ``settings``; cached per configuration."""
    key = (
        str(settings.data_dir),
        settings.tsa_url,
        str(settings.tsa_ca_file) if settings.tsa_ca_file else None,
    )
    with _lock:
        cached = _cache.get(key)
        if cached is None or cached.origin != settings.origin:
            cached = _load(settings)
            _cache[key] = cached
        return cached


def _load(settings: Settings) -> JournalKeys:
    signer = SigningKey.load_or_create(settings.data_dir / "keys")
    tsa: TimestampAuthority
    if settings.tsa_url:
        tsa = HttpTSA(settings.tsa_url, _anchors(settings.tsa_ca_file))
    else:
        tsa = BuiltinTSA.load(settings.data_dir / "tsa")
    return JournalKeys(signer=signer, tsa=tsa, origin=settings.origin)


def _anchors(path: Path | None) -> list[x509.Certificate]:
    if path is None:
        raise SigningKeyError(
            "SAE_TSA_URL is set but SAE_TSA_CA_FILE is not: the TSA's replies cannot be checked"
        )
    try:
        anchors = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise SigningKeyError(f"SAE_TSA_CA_FILE={path} is unreadable: {exc}") from None
    return anchors


def tsa_health(settings: Settings) -> tuple[bool, str]:
    """For ``/health``: can the configured TSA time-stamp right now (token verified)?"""
    from sae.errors import SAEError

    try:
        keys = load_journal_keys(settings)
        token = keys.tsa.timestamp(b"sae health probe")
    except SAEError as exc:
        return False, f"{exc.code}: {exc.detail}"
    kind = "external" if settings.tsa_url else "built-in"
    return True, f"{kind} TSA answered ({token.gen_time.isoformat()})"
