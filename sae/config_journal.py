"""Changes of configuration are journaled: at each start, one event if any part differs.

Each part of the configuration that bears on the evidence gets a canonical digest (SHA-256 of
its canonical JSON): the storage offers (the offers file's content, secrets excluded), the
retention referential in force (its rules), the journal keys (fingerprints), the TSA (URL,
trust anchors' fingerprints, intermediates, policy, who SAE authenticates as — never a secret),
the witnesses file (``SAE_WITNESSES_FILE``), and who may sign in with which role through the
commune's directory (the group → role mapping, the LDAP and OpenID Connect settings — never
the service password or the client secret). The first start journals ``config.initial``
with every digest; a later start whose digests differ from the last journaled ones journals
``config.changed`` naming each changed part with its old and new digest. An unchanged start
journals nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sae.config import Settings
from sae.db import lock_for_writing, transaction
from sae.journal.models import Event
from sae.journal.service import append_event

CONFIG_INITIAL = "config.initial"
CONFIG_CHANGED = "config.changed"
PARTS = ("offers", "referential", "journal_keys", "tsa", "witnesses", "sign_in")
_LOCK = 0x5AE0_C0F6
#: Keys whose values are never digested as such (an offers file names environment variables,
#: but a future key could hold a value itself): their presence counts, not their value.
_SECRET_WORDS = ("secret", "password", "token", "private")


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _without_secrets(value: Any) -> Any:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = str(key).lower()
            secret = any(word in name for word in _SECRET_WORDS) and not name.endswith("_env")
            out[str(key)] = "<secret>" if secret else _without_secrets(item)
        return out
    if isinstance(value, list):
        return [_without_secrets(item) for item in value]
    return value


def _yaml_file(path: Path | None) -> Any:
    if path is None:
        return None
    try:
        return _without_secrets(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError) as exc:
        return {"unreadable": type(exc).__name__}


def _certificate_fingerprints(path: Path | None) -> list[str]:
    if path is None or not path.is_file():
        return []
    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError):
        return ["unreadable"]
    return [c.fingerprint(hashes.SHA256()).hex() for c in certs]


def witnesses_file(settings: Settings) -> Path | None:
    """``SAE_WITNESSES_FILE``: the setting when this version has it, else the environment."""
    value = getattr(settings, "witnesses_file", None) or os.environ.get("SAE_WITNESSES_FILE")
    return Path(value) if value else None


def configuration_parts(settings: Settings, session: Session) -> dict[str, Any]:
    """Each part's canonical document (what is digested; no secret in it)."""
    from sae.journal.keyhistory import fingerprint
    from sae.journal.tsa import BUILTIN_POLICY
    from sae.retention.models import Rule

    rules = [
        [r.id, r.type, r.value, r.duration, r.measurement, r.meta]
        for r in session.scalars(select(Rule).order_by(Rule.id))
    ]
    public = settings.data_dir / "keys" / "journal-signing.pub.pem"
    from sae.journal.checkpoint import SigningKey

    signing = settings.data_dir / "keys" / SigningKey.FILENAME
    journal_keys: dict[str, Any] = {"signing": None}
    if signing.exists():
        try:
            journal_keys["signing"] = fingerprint(SigningKey.load(signing).public_pem)
        except Exception:  # the start's key check reports an unusable key
            journal_keys["signing"] = fingerprint(public.read_bytes()) if public.exists() else None
    if settings.tsa_url:
        tsa: dict[str, Any] = {
            "url": settings.tsa_url,
            "anchors": _certificate_fingerprints(settings.tsa_ca_file),
            "intermediates": _certificate_fingerprints(settings.tsa_chain_file),
            "policy": settings.tsa_policy_oid,
            "username": settings.tsa_username,
            "bearer": settings.tsa_bearer_token is not None,
            "client_certificate": _certificate_fingerprints(settings.tsa_client_cert),
        }
    else:
        tsa = {
            "url": None,
            "anchors": _certificate_fingerprints(settings.data_dir / "tsa" / "root.pem"),
            "policy": BUILTIN_POLICY,
        }
    offers: Any = (
        _yaml_file(settings.offers_file)
        if settings.offers_file is not None
        else {"embedded": str(settings.data_dir / "offer")}
    )
    return {
        "offers": offers,
        "referential": rules,
        "journal_keys": journal_keys,
        "tsa": tsa,
        "witnesses": _yaml_file(witnesses_file(settings)),
        "sign_in": _sign_in(settings),
    }


def _sign_in(settings: Settings) -> dict[str, Any]:
    """Who the directory lets in, as what: a change of it is a change of who can act."""
    s = settings
    ldap = None
    if s.ldap_url is not None:
        ldap = {
            "url": s.ldap_url,
            "start_tls": s.ldap_start_tls,
            "anchors": _certificate_fingerprints(s.ldap_ca_file),
            "bind_dn_template": s.ldap_bind_dn_template,
            "service_dn": s.ldap_service_dn,
            "user_base": s.ldap_user_base,
            "user_filter": s.ldap_user_filter,
            "group_base": s.ldap_group_base,
            "group_filter": s.ldap_group_filter if s.ldap_group_base else None,
        }
    oidc = None
    if s.oidc_issuer is not None:
        oidc = {
            "issuer": s.oidc_issuer,
            "client_id": s.oidc_client_id,
            "anchors": _certificate_fingerprints(s.oidc_ca_file),
            "groups_claim": s.oidc_groups_claim,
            "login_claim": s.oidc_login_claim,
            "algorithms": sorted(s.oidc_algorithms),
        }
    return {
        "group_roles": {
            group: {"role": rule.role, "producers": sorted(rule.producers)}
            for group, rule in sorted(s.group_roles.items())
        },
        "ldap": ldap,
        "oidc": oidc,
    }


def configuration_digests(settings: Settings, session: Session) -> dict[str, str]:
    """``{part: SHA-256 hex of its canonical JSON}``."""
    return {name: _digest(doc) for name, doc in configuration_parts(settings, session).items()}


def journal_configuration(settings: Settings, sessions: sessionmaker[Session]) -> str | None:
    """Journal ``config.initial`` or ``config.changed`` when due; the type journaled, or None."""
    with transaction(sessions) as session:
        lock_for_writing(session, _LOCK)  # processes starting together journal a change once
        digests = configuration_digests(settings, session)
        last = session.execute(
            select(Event.payload)
            .where(Event.type.in_((CONFIG_INITIAL, CONFIG_CHANGED)))
            .order_by(Event.leaf_index.desc())
            .limit(1)
        ).scalar()
        if last is None:
            append_event(
                session, type=CONFIG_INITIAL, actor="system:start", payload={"digests": digests}
            )
            return CONFIG_INITIAL
        before: dict[str, Any] = dict(last.get("digests") or {})
        changed = {
            name: {"old": before.get(name), "new": digest}
            for name, digest in digests.items()
            if before.get(name) != digest
        }
        if not changed:
            return None
        append_event(
            session,
            type=CONFIG_CHANGED,
            actor="system:start",
            payload={"changed": changed, "digests": digests},
        )
        return CONFIG_CHANGED
