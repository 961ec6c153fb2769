"""Antivirus at ingest against a real clamd (tests/clamd.py: a signature database generated here).

Every file is scanned before anything is stored: an infected file refuses the transfer (ATR KO
naming the signature and the file) and leaves nothing on the offers nor in the catalogue.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from sae.catalog.models import ArchiveUnit, DataObject
from sae.config import Settings
from sae.ingest.antivirus import ClamdClient, ClamdError, TooLarge, required
from tests.clamd import (
    BODY_SIGNATURE,
    HASH_SIGNATURE,
    INFECTED,
    MARKER,
    STREAM_MAX,
    Clamd,
    clamd,  # noqa: F401 - the session's clamd fixture
)
from tests.conftest import TEST_RULES_CSV, Api
from tests.sipfactory import FileSpec, UnitSpec, build_zip, simple_sip


@pytest.fixture
def make_api(settings: Settings) -> Iterator[Any]:
    """An app on the test database with some settings changed."""
    from fastapi.testclient import TestClient

    from sae.app import create_app

    clients: list[Any] = []

    def make(**changes: Any) -> Api:
        changed = settings.model_copy(update=changes)
        client = TestClient(create_app(changed), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        api = Api(client, changed)
        api.load_rules(TEST_RULES_CSV)
        return api

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def _with_file(message_id: str, uri: str, data: bytes) -> bytes:
    spec = simple_sip(message_id)
    spec.files.append(FileSpec(uri=uri, data=data, mime=None))
    spec.units[0].children.append(UnitSpec(id="AU-2", title="Pièce jointe", files=[1]))
    return build_zip(spec)


def _nothing_stored(api: Api) -> None:
    from sae.db import transaction

    for offer in api.runtime.offer_set.offers.values():
        assert list(offer.list_keys("objects/")) == []
        assert list(offer.list_keys("transfers/")) == []
    with transaction(api.runtime.sessions) as session:
        assert session.scalar(select(func.count()).select_from(DataObject)) == 0
        assert session.scalar(select(func.count()).select_from(ArchiveUnit)) == 0


def test_the_client_speaks_clamds_protocol(clamd: Clamd) -> None:  # noqa: F811
    client = ClamdClient(clamd.socket)
    assert client.ping()
    assert client.version().startswith("ClamAV ")
    assert client.scan([b"%PDF-1.4\n%%EOF\n"]).clean
    # The hash signature needs the whole file; the body signature is found across chunks.
    assert client.scan([INFECTED[:10], INFECTED[10:]]).signature == f"{HASH_SIGNATURE}.UNOFFICIAL"
    half = len(MARKER) // 2
    body = [b"x" * 5000 + MARKER[:half], MARKER[half:] + b"y" * 5000]
    assert client.scan(body).signature == f"{BODY_SIGNATURE}.UNOFFICIAL"
    with pytest.raises(TooLarge):
        client.scan(iter([b"\0" * (256 * 1024)] * (STREAM_MAX // (256 * 1024) + 2)))


def test_an_unreachable_clamd_is_an_error_not_a_pass(tmp_path: Path) -> None:
    client = ClamdClient(str(tmp_path / "no-such.sock"), timeout=2)
    with pytest.raises(ClamdError):
        client.scan([b"data"])
    with socket.socket() as listener:  # a port where nothing listens
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
    with pytest.raises(ClamdError):
        ClamdClient(f"127.0.0.1:{port}", timeout=2).ping()


def test_required_by_default_once_a_socket_is_configured(settings: Settings) -> None:
    assert not required(settings)  # the embedded default: no clamd, no scan
    assert required(settings.model_copy(update={"clamd_socket": "/run/clamav/clamd.ctl"}))
    assert not required(settings.model_copy(update={"clamd_socket": "/x", "clamd_required": False}))
    assert required(settings.model_copy(update={"clamd_required": True}))


def test_an_infected_file_refuses_the_transfer_and_nothing_is_stored(
    make_api: Any,
    clamd: Clamd,  # noqa: F811
) -> None:
    api = make_api(clamd_socket=clamd.socket)
    response = api.deposit(_with_file("MSG-VIRUS", "Content/pièce jointe.bin", INFECTED))
    assert response.status_code == 422, response.text
    body = response.json()
    assert [e["code"] for e in body["errors"]] == ["antivirus.infected"]
    error = body["errors"][0]
    assert error["where"] == "BDO-1"
    assert HASH_SIGNATURE in error["message"]
    assert "Content/pièce jointe.bin" in error["message"]
    _nothing_stored(api)
    atr = api.client.get(body["atr_url"], headers=api.auth()).content.decode()
    assert "<ReplyCode>KO</ReplyCode>" in atr
    assert f"{HASH_SIGNATURE}.UNOFFICIAL" in atr
    assert "antivirus.infected" in atr


def test_a_clean_sip_is_accepted_after_its_scan(make_api: Any, clamd: Clamd) -> None:  # noqa: F811
    api = make_api(clamd_socket=clamd.socket, ingest_threads=2)
    response = api.deposit(_with_file("MSG-CLEAN", "Content/annexe.txt", b"un texte sain\n"))
    assert response.status_code == 201, response.text
    assert response.json()["warnings"] == []


def test_a_file_too_large_to_be_scanned_is_a_fault_not_a_pass(
    make_api: Any,
    clamd: Clamd,  # noqa: F811
) -> None:
    api = make_api(clamd_socket=clamd.socket)
    big = random.Random(20).randbytes(STREAM_MAX + 4096)  # incompressible: no zip bomb
    response = api.deposit(_with_file("MSG-BIG", "Content/gros.bin", big))
    assert response.status_code == 422, response.text
    assert [e["code"] for e in response.json()["errors"]] == ["antivirus.too_large"]
    _nothing_stored(api)


def test_clamd_unreachable_and_required_is_a_503(make_api: Any, tmp_path: Path) -> None:
    api = make_api(clamd_socket=str(tmp_path / "absent.sock"))  # required: a socket is set
    response = api.deposit(_with_file("MSG-503", "Content/a.txt", b"texte\n"))
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "ingest.antivirus_unavailable"
    _nothing_stored(api)
    # Required without any socket: a configuration that cannot scan refuses too.
    api = make_api(clamd_required=True)
    response = api.deposit(_with_file("MSG-503-2", "Content/a.txt", b"texte\n"))
    assert response.status_code == 503, response.text


def test_clamd_unreachable_and_not_required_is_a_warning(make_api: Any, tmp_path: Path) -> None:
    api = make_api(clamd_socket=str(tmp_path / "absent.sock"), clamd_required=False)
    response = api.deposit(_with_file("MSG-WARN", "Content/a.txt", b"texte\n"), xml=True)
    assert response.status_code == 201, response.text
    atr = response.content.decode()
    assert "<ReplyCode>WARNING</ReplyCode>" in atr
    assert "antivirus.not_scanned" in atr
