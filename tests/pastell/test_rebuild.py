"""After the loss of the database, Pastell's ACK and ATR lookups answer the same bytes as
before (issue 17's promise, Pastell's mailbox included).

Pastell sends transfers through the real server (accepted in 1.0, 2.1 and 2.2, in one go and in
chunks; refused by the ingest, before it, and for an access code with no rule); two more are
received by the same domain function in a process whose worker never runs (received, not
ingested, at the loss), one of them losing its upload. The database is emptied, ``sae rebuild
--from local`` rebuilds it, the Pastell account is created again with the same login (a new
password), and every lookup answers as before; the pending one is ingested, the one whose
upload is gone is refused with "send it again", and sent again it is archived.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sae.auth.models import User
from sae.config import load_settings
from sae.ingest.models import Transfer
from sae.pastell import service
from sae.pastell.models import PastellMessage
from sae.runtime import Runtime
from tests.conftest import Database
from tests.pastell.client import Answer, PastellClient
from tests.pastell.conftest import Server, answered, start_server, stop_server
from tests.pastell.samples import bordereau, hostile, targz

PASSWORD = "Mot-de-passe-avant-la-perte"
NEW_PASSWORD = "Mot-de-passe-apres-la-perte"
AGENCY = "COMMUNE-1"
FILES = {"acte.pdf": b"%PDF-1.4 acte " * 100, "annexes/annexe 1.pdf": b"%PDF-1.4 annexe"}
BIG = {f"scans/page-{i}.bin": bytes([i]) * 3000 for i in range(4)}


def _send_everything(srv: Server) -> dict[str, tuple[bytes, bytes]]:
    """Pastell's transfers of before the loss, and the ACK and ATR bytes it got."""
    client = PastellClient(srv.url, "commune-1", PASSWORD)
    chunked = PastellClient(srv.url, "commune-1", PASSWORD, chunk_size=4096)
    sent: list[str] = []
    for version in ("1.0", "2.1", "2.2"):
        ident = f"TR {version}/AVANT"  # a space and a slash: urlencoded by Pastell
        client.send(bordereau(version, ident, AGENCY, FILES), targz(FILES), "a.tar.gz")
        sent.append(ident)
    chunked.send(bordereau("2.2", "TR-MORCEAUX", AGENCY, BIG), targz(BIG), "big")
    sent.append("TR-MORCEAUX")
    tampered = {**FILES, "acte.pdf": b"%PDF-1.4 autre contenu"}
    client.send(bordereau("2.1", "TR-KO-EMPREINTE", AGENCY, FILES), targz(tampered), "a.tar.gz")
    sent.append("TR-KO-EMPREINTE")
    hostile_archive = targz(FILES, extra=[hostile("traversal")])
    client.send(bordereau("1.0", "TR-KO-CHEMIN", AGENCY, FILES), hostile_archive, "a.tar.gz")
    sent.append("TR-KO-CHEMIN")
    unmapped = bordereau("1.0", "TR-KO-AR042", AGENCY, FILES).replace(b">AR038<", b">AR042<")
    client.send(unmapped, targz(FILES), "a.tar.gz")
    sent.append("TR-KO-AR042")
    replies = {}
    for ident in sent:
        ack = answered(lambda ident=ident: client.ack(AGENCY, ident)).body
        atr = answered(lambda ident=ident: client.atr(AGENCY, ident)).body
        replies[ident] = (ack, atr)
    for ident in ("TR 1.0/AVANT", "TR 2.1/AVANT", "TR 2.2/AVANT", "TR-MORCEAUX"):
        assert b"<ReplyCode>000</ReplyCode>" in replies[ident][1], ident
    for ident in ("TR-KO-EMPREINTE", "TR-KO-CHEMIN", "TR-KO-AR042"):
        assert b"<ReplyCode>000</ReplyCode>" not in replies[ident][1], ident
    assert b"pastell.access_code_unmapped" in replies["TR-KO-AR042"][1]
    return replies


def _received_not_ingested(srv: Server, database: Database) -> dict[str, bytes]:
    """Two transfers received (200 to Pastell) by a process whose worker never ran; the
    upload of the second is lost with the database. Their ACKs."""
    settings = load_settings(data_dir=srv.data_dir, database_url=database.url, offers_file=None)
    runtime = Runtime.open(settings)
    acks = {}
    try:
        with runtime.sessions() as session:
            account = session.scalar(select(User).where(User.login == "commune-1"))
            assert account is not None
            session.expunge(account)
        for ident in ("TR-EN-ATTENTE", "TR-PERDU"):
            data = bordereau("2.1", ident, AGENCY, FILES)
            received = service.receive(
                runtime, account, data, io.BytesIO(targz(FILES)), chunked=False
            )
            assert received.status == "received"
            acks[ident] = service.reply(runtime, account, "Acknowledgement", AGENCY, ident)
        with runtime.sessions() as session:
            lost = session.scalar(
                select(PastellMessage.attachments).where(
                    PastellMessage.transfer_identifier == "TR-PERDU"
                )
            )
        upload = service.uploads_dir(runtime) / str(lost)
        upload.unlink()
        service.bordereau_path(upload).unlink()
    finally:
        runtime.close()
    return acks


def _transfers(database: Database, ident: str, status: str = "OK") -> int:
    with Session(database.engine) as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Transfer)
                .where(Transfer.message_identifier == ident, Transfer.status == status)
            )
            or 0
        )


def test_pastell_gets_the_same_ack_and_atr_after_the_loss_of_the_database(
    tmp_path: Path, database: Database
) -> None:
    database.reset()
    srv = start_server(tmp_path, database)
    try:
        srv.load_test_rules()
        srv.create_account("commune-1", AGENCY, PASSWORD)
        srv.create_account("commune-2", "COMMUNE-2", PASSWORD)
        replies = _send_everything(srv)
    finally:
        stop_server(srv.proc)
    acks = _received_not_ingested(srv, database)

    database.reset()  # the loss: every row, the journal's included
    rebuilt = subprocess.run(
        [sys.executable, "-m", "sae", "rebuild", "--from", "local", "--json"],
        env=srv.env,
        cwd=tmp_path,
        capture_output=True,
        timeout=600,
        check=False,
    )
    assert rebuilt.returncode == 0, rebuilt.stderr.decode() + rebuilt.stdout.decode()
    out = rebuilt.stdout.decode()
    json.loads(out[out.index("{") :])

    srv = start_server(tmp_path, database)
    try:
        client = PastellClient(srv.url, "commune-1", NEW_PASSWORD)
        assert client.versions().status == 401  # accounts are not rebuilt
        srv.create_account("commune-1", AGENCY, NEW_PASSWORD)
        for ident, (ack, atr) in replies.items():
            assert client.ack(AGENCY, ident).body == ack, ident
            again = client.atr(AGENCY, ident)
            assert again.status == 200, (ident, again.body)
            assert again.body == atr, ident
        # Lookups stay scoped to the account: another commune's, created again, sees nothing.
        srv.create_account("commune-2", "COMMUNE-2", PASSWORD)
        other = PastellClient(srv.url, "commune-2", PASSWORD)
        assert other.ack(AGENCY, "TR 2.1/AVANT").status == 404
        assert other.atr(AGENCY, "TR-EN-ATTENTE").status == 404
        # Received, not ingested at the loss: the same ACK, then ingested once.
        assert client.ack(AGENCY, "TR-EN-ATTENTE").body == acks["TR-EN-ATTENTE"]
        pending = answered(lambda: client.atr(AGENCY, "TR-EN-ATTENTE"))
        assert b"<ReplyCode>000</ReplyCode>" in pending.body, pending.body
        assert _transfers(database, "TR-EN-ATTENTE") == 1
        # Its upload lost too: a refusal that tells Pastell to send it again, which it does.
        assert client.ack(AGENCY, "TR-PERDU").body == acks["TR-PERDU"]
        lost = answered(lambda: client.atr(AGENCY, "TR-PERDU"))
        assert b"<ReplyCode>000</ReplyCode>" not in lost.body
        assert service.LOST.encode() in lost.body
        (resent,) = client.send(
            bordereau("2.1", "TR-PERDU", AGENCY, FILES), targz(FILES), "a.tar.gz"
        )
        assert resent.status == 200, resent.body

        def accepted() -> Answer:
            answer = client.atr(AGENCY, "TR-PERDU")
            if b"<ReplyCode>000</ReplyCode>" not in answer.body:
                return Answer(409, answer.body, answer.headers)
            return answer

        answered(accepted)
        assert _transfers(database, "TR-PERDU") == 1
        # Nothing archived twice by the rebuild or the worker.
        for ident in ("TR 1.0/AVANT", "TR 2.1/AVANT", "TR 2.2/AVANT", "TR-MORCEAUX"):
            assert _transfers(database, ident) == 1, ident
    finally:
        stop_server(srv.proc)
        database.reset()
