"""Changes of configuration are journaled at start (issue #18 item 8)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from sae.config import Settings
from sae.config_journal import CONFIG_CHANGED, CONFIG_INITIAL
from sae.journal.models import Event
from sae.runtime import Runtime

OFFERS = """\
offers:
  - name: site-a
    kind: filesystem
    path: {path}
    jurisdiction: FR
    region: Île-de-France
strategy:
  copies: [site-a]
"""


def _config_events(settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    runtime = Runtime.open(settings)
    try:
        with runtime.sessions() as session:
            rows = session.execute(
                select(Event.type, Event.payload)
                .where(Event.type.in_((CONFIG_INITIAL, CONFIG_CHANGED)))
                .order_by(Event.leaf_index)
            ).all()
        return [(t, p) for t, p in rows]
    finally:
        runtime.close()


def test_first_start_then_changes_are_journaled(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _config_events(settings)
    assert [t for t, _ in first] == [CONFIG_INITIAL]
    digests = first[0][1]["digests"]
    assert set(digests) == {
        "offers",
        "referential",
        "journal_keys",
        "tsa",
        "witnesses",
        "sign_in",
    }

    assert _config_events(settings) == first  # an unchanged start journals nothing

    offers = tmp_path / "offers.yaml"
    offers.write_text(OFFERS.format(path=tmp_path / "site-a"), encoding="utf-8")
    witnesses = tmp_path / "witnesses.yaml"
    witnesses.write_text("witnesses: []\nquorum: 0\n", encoding="utf-8")
    monkeypatch.setenv("SAE_WITNESSES_FILE", str(witnesses))
    changed = _config_events(settings.model_copy(update={"offers_file": offers}))
    assert [t for t, _ in changed] == [CONFIG_INITIAL, CONFIG_CHANGED]
    parts = changed[1][1]["changed"]
    assert set(parts) == {"offers", "witnesses"}
    assert parts["offers"]["old"] == digests["offers"]
    assert parts["offers"]["new"] != digests["offers"]
    assert changed[1][1]["digests"]["journal_keys"] == digests["journal_keys"]


def test_secrets_never_reach_the_journal(settings: Settings, tmp_path: Path) -> None:
    from sae.config_journal import configuration_parts

    offers = tmp_path / "offers.yaml"
    offers.write_text(
        OFFERS.format(path=tmp_path / "site-a") + "extra:\n  secret_key: hunter2\n"
        "  access_key_env: SAE_S3_KEY\n",
        encoding="utf-8",
    )
    configured = settings.model_copy(
        update={"offers_file": offers, "tsa_username": "u", "tsa_password": None}
    )
    runtime = Runtime.open(settings)
    try:
        with runtime.sessions() as session:
            parts = configuration_parts(configured, session)
    finally:
        runtime.close()
    text = repr(parts)
    assert "hunter2" not in text
    assert "SAE_S3_KEY" in text  # the name of a variable is not a secret


def test_a_new_group_mapping_is_journaled(settings: Settings) -> None:
    first = _config_events(settings)
    mapped = settings.model_copy(
        update={
            "group_roles": Settings(group_roles={"sae-admins": {"role": "admin"}}).group_roles,
            "ldap_url": "ldaps://ad.mairie.local",
            "ldap_bind_dn_template": "{login}@mairie.local",
        }
    )
    changed = _config_events(mapped)
    assert [t for t, _ in changed] == [CONFIG_INITIAL, CONFIG_CHANGED]
    assert set(changed[1][1]["changed"]) == {"sign_in"}
    assert changed[1][1]["changed"]["sign_in"]["old"] == first[0][1]["digests"]["sign_in"]
    assert _config_events(mapped) == changed  # the same mapping again: nothing new
