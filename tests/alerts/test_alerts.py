"""Alerts: a real SMTP server process receives the mail of a corrupted copy found by an audit;
a webhook receiver gets signed JSON; deduplication, reminders, clearing; a mail server that is
down delays the alert without breaking anything."""

from __future__ import annotations

import hashlib
import hmac
import json
import mailbox
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import delete, select, update

from sae.alerts.models import Alert
from sae.alerts.service import CONDITIONS
from sae.alerts.texts import compose
from sae.alerts.worker import run_once
from sae.db import transaction, utcnow
from sae.storage.audit import create_audit, run_audit
from tests.conftest import Api, openssl
from tests.sipfactory import build_zip, simple_sip
from tests.storage.conftest import deposit
from tests.storage.helpers import flip_byte


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SmtpServer:
    """``python -m aiosmtpd`` as a process of its own, delivering into a Maildir."""

    def __init__(self, directory: Path, port: int, *tls: str) -> None:
        self.directory = directory
        self.port = port
        #: aiosmtpd's TLS options (``--tlscert C --tlskey K`` for STARTTLS, ``--smtpscert``…).
        self.tls = list(tls)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                f"127.0.0.1:{self.port}",
                *self.tls,
                "-c",
                "aiosmtpd.handlers.Mailbox",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    _, err = self.proc.communicate()
                    raise AssertionError(f"aiosmtpd exited: {err.decode()}") from None
                assert time.monotonic() < deadline, "the SMTP server did not start"
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
            self.proc.communicate(timeout=10)  # closes its pipe

    def messages(self) -> list[Message]:
        if not (self.directory / "new").is_dir():
            return []
        return list(mailbox.Maildir(self.directory, create=False))

    def wait_for(self, count: int, seconds: float = 20) -> list[Message]:
        deadline = time.monotonic() + seconds
        while True:
            found = self.messages()
            if len(found) >= count:
                return found
            assert time.monotonic() < deadline, f"{len(found)} mail(s), expected {count}"
            time.sleep(0.2)


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    server = SmtpServer(tmp_path / "maildir", _free_port())
    server.start()
    yield server
    server.stop()


class Webhook:
    """The receiving end of the alerts' webhook: records each POST (headers, body)."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((dict(self.headers.items()), body))
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


def _configure(api: Api, **changes: Any) -> None:
    """Change the running app's alert settings (the worker reads them each round)."""
    settings = api.runtime.settings
    for name, value in changes.items():
        setattr(settings, name, value)


def _round(api: Api) -> int:
    rt = api.runtime
    return run_once(rt.sessions, rt.settings, rt.offer_set)


class _Outage:
    """A filesystem offer made unreachable (a file where its directory was), then back."""

    def __init__(self, api: Api, offer: str) -> None:
        self.root: Path = api.runtime.offer_set.offers[offer].root
        self.away = self.root.with_name(self.root.name + "-away")

    def __enter__(self) -> None:
        self.root.rename(self.away)
        self.root.write_text("not a directory any more")

    def __exit__(self, *exc: object) -> None:
        self.root.unlink()
        self.away.rename(self.root)


def _alert(api: Api, condition: str, subject: str) -> Alert:
    with transaction(api.runtime.sessions) as session:
        alert = session.scalar(
            select(Alert).where(Alert.condition == condition, Alert.subject == subject)
        )
        assert alert is not None
        session.expunge(alert)
        return alert


def test_a_corrupted_copy_found_by_an_audit_is_mailed(two_sites: Api, smtp: SmtpServer) -> None:
    _configure(
        two_sites,
        alert_smtp_host="127.0.0.1",
        alert_smtp_port=smtp.port,
        alert_smtp_security="none",
        alert_from="sae@mairie.example",
        alert_to=["archives@mairie.example", "dsi@mairie.example"],
    )
    _round(two_sites)  # the first round sets the journal cursor (or the worker's did)
    payload = b"%PDF-1.4\n" + bytes(range(256)) * 20 + b"\n%%EOF\n"
    object_id = deposit(two_sites, "MSG-ALERT-MAIL", payload)
    site_b = two_sites.runtime.offer_set.offers["site-b"]
    flip_byte(site_b, f"objects/{object_id}", offset=50)
    rt = two_sites.runtime
    with transaction(rt.sessions) as session:
        audit_id = create_audit(session, rt.offer_set).id
    assert run_audit(rt.sessions, rt.offer_set, audit_id) == audit_id

    _round(two_sites)  # the background worker may have sent it already: once either way
    [mail] = smtp.wait_for(1)
    assert mail["From"] == "sae@mairie.example"
    assert "archives@mairie.example" in mail["To"]
    assert "dsi@mairie.example" in mail["To"]
    subject = str(mail["Subject"])
    from email.header import decode_header, make_header

    subject = str(make_header(decode_header(subject)))
    assert subject.startswith("[SAE] Copie endommagée sur l'offre « site-b »")
    body = mail.get_payload(decode=True).decode("utf-8")  # type: ignore[union-attr]
    assert object_id in body
    assert "Un audit d'intégrité a trouvé une copie endommagée (contenu altéré)" in body
    assert "réparée automatiquement" in body  # the audit repaired it from site-a
    assert "Que faire" in body
    # The repair cleared the condition; the mail was sent once, and a new round sends nothing.
    alert = _alert(two_sites, "copy_damaged", f"{object_id}@site-b")
    assert (alert.active, alert.pending, alert.notifications) == (False, False, 1)
    assert _round(two_sites) == 0
    assert len(smtp.messages()) == 1


def test_webhook_signed_deduplicated_reminded_and_cleared(two_sites: Api, webhook: Webhook) -> None:
    secret = "webhook-hmac-secret-for-tests"  # noqa: S105
    _configure(
        two_sites,
        alert_webhook_url=webhook.url,
        alert_webhook_secret=SecretStr(secret),
    )
    _round(two_sites)
    before = len(webhook.received)
    with _Outage(two_sites, "site-a"):  # the offer stops answering
        assert _round(two_sites) == 1
        headers, body = webhook.received[before]
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-SAE-Signature"], expected)
        doc = json.loads(body)
        assert (doc["condition"], doc["subject"], doc["active"]) == ("offer_down", "site-a", True)
        assert doc["title"] == "[SAE] Offre de stockage « site-a » injoignable"
        assert "les nouveaux versements sont refusés" in doc["text"]
        # Still down: not sent again before the repeat interval — nor by another process, or
        # after a restart: the deduplication is in the database.
        assert _round(two_sites) == 0
        from sae.runtime import Runtime

        other = Runtime.open(two_sites.runtime.settings)
        try:
            assert run_once(other.sessions, other.settings, other.offer_set) == 0
        finally:
            other.close()
        assert len(webhook.received) == before + 1
        # After the repeat interval: a reminder.
        _configure(two_sites, alert_repeat_hours=0.0001)
        time.sleep(0.5)
        assert _round(two_sites) == 1
        reminder = json.loads(webhook.received[-1][1])
        assert reminder["reminder"] is True
        assert reminder["title"].startswith("[SAE] Rappel : Offre de stockage")
        _configure(two_sites, alert_repeat_hours=24.0)
    # Back: cleared, nothing sent; down again: a new alert at once.
    assert _round(two_sites) == 0
    assert _alert(two_sites, "offer_down", "site-a").active is False
    sent = len(webhook.received)
    with _Outage(two_sites, "site-a"):
        assert _round(two_sites) == 1
        assert len(webhook.received) == sent + 1
        assert json.loads(webhook.received[-1][1])["reminder"] is False


def test_a_mail_server_down_delays_the_alert_and_breaks_nothing(
    two_sites: Api, tmp_path: Path, webhook: Webhook
) -> None:
    port = _free_port()  # nobody listens there yet
    _configure(
        two_sites,
        alert_smtp_host="127.0.0.1",
        alert_smtp_port=port,
        alert_smtp_security="none",
        alert_smtp_timeout_seconds=3.0,
        alert_from="sae@mairie.example",
        alert_to=["archives@mairie.example"],
        alert_webhook_url=webhook.url,
    )
    _round(two_sites)
    with _Outage(two_sites, "site-a"), _Outage(two_sites, "site-b"):
        assert _round(two_sites) == 0  # no exception: the mail failed, the webhook took them
        alerts = [_alert(two_sites, "offer_down", name) for name in ("site-a", "site-b")]
        for alert in alerts:
            assert alert.pending
            assert alert.attempts == 1
            assert alert.delivered == ["webhook"]
            assert alert.last_error is not None
            assert alert.last_error.startswith("mail:")
            assert alert.next_attempt_at is not None
            assert alert.next_attempt_at > utcnow()
        # The mail server was tried once in the round, not once per alert.
        assert sum("not tried" in (a.last_error or "") for a in alerts) == 1
        assert two_sites.client.get("/health").status_code == 503  # serving goes on
        hooks = len(webhook.received)
        # The mail server comes back; once the retries are due the mails go, the webhook is
        # not sent twice.
        server = SmtpServer(tmp_path / "late-maildir", port)
        server.start()
        try:
            with transaction(two_sites.runtime.sessions) as session:
                session.execute(update(Alert).values(next_attempt_at=utcnow()))
            assert _round(two_sites) == 2
            mails = server.wait_for(2)
            assert len(mails) == 2
            assert len(webhook.received) == hooks
        finally:
            server.stop()


def test_every_condition_has_a_french_text() -> None:
    samples: dict[str, dict[str, Any]] = {
        "copy_damaged": {"object_id": "o1", "offer": "a", "kind": "missing", "repaired": False},
        "offer_down": {"offer": "a", "detail": "connection refused"},
        "tsa_down": {"tsa": "https://tsa.example", "detail": "timeout"},
        "audit_failed": {"audit_id": "x", "checked": 3, "error": "boom"},
        "drill_failed": {"outcome": "different", "offers": {"a": {"identical": False}}},
        "witness_refused": {"witness": "ad35", "status": 409, "tree_size": 12},
        "quarantine_overdue": {"offer": "a", "copies": 2, "quarantine_days": 1},
    }
    assert set(samples) == set(CONDITIONS)
    for condition, details in samples.items():
        alert = Alert(condition=condition, subject="s", details=details, notifications=0)
        title, body = compose(alert)
        assert title.startswith("[SAE] ")
        assert "Que faire" in body, condition


def _standing(api: Api) -> set[tuple[str, str]]:
    with transaction(api.runtime.sessions) as session:
        rows = session.execute(
            select(Alert.condition, Alert.subject).where(Alert.active.is_(True))
        ).all()
    return {(str(c), str(s)) for c, s in rows}


def _journal(api: Api, type_: str, **payload: Any) -> None:
    from sae.journal.service import append_event

    with transaction(api.runtime.sessions) as session:
        append_event(session, type=type_, actor="test", payload=payload)


def test_each_condition_is_raised_by_its_source_and_cleared(api: Api) -> None:
    from datetime import timedelta

    from sae.alerts.models import AlertCursor
    from sae.journal.keys import record_tsa_check
    from sae.storage.models import ObjectCopy

    # An archive that never alerted (no cursor): its first round starts at the journal's end,
    # its history is not news.
    with transaction(api.runtime.sessions) as session:
        session.execute(delete(AlertCursor))
    _journal(api, "storage.audit_failed", audit_id="history", checked=1, error="old")
    _round(api)
    assert ("audit_failed", "") not in _standing(api)

    _journal(api, "storage.audit_failed", audit_id="a1", checked=7, error="offer timed out")
    _journal(api, "recovery.drill_completed", outcome="different", offers={}, report_units=[])
    _journal(api, "journal.witness_refused", witness="ad35", status=409, tree_size=9, body="")
    record_tsa_check(api.runtime.settings, ok=False, detail="tsa.unavailable: timeout")
    _round(api)
    assert {
        ("audit_failed", ""),
        ("drill_failed", ""),
        ("witness_refused", "ad35"),
        ("tsa_down", ""),
    } <= _standing(api)
    assert _alert(api, "audit_failed", "").details["error"] == "offer timed out"

    # A copy still in quarantine long after its window: overdue on its offer.
    accepted = api.deposit(build_zip(simple_sip("MSG-ALERT-QUARANTINE")))
    assert accepted.status_code == 201, accepted.text
    with transaction(api.runtime.sessions) as session:
        session.execute(
            update(ObjectCopy).values(
                quarantine_ends_at=utcnow(), stored_at=utcnow() - timedelta(days=30)
            )
        )
    _round(api)
    assert ("quarantine_overdue", "local") in _standing(api)
    assert _alert(api, "quarantine_overdue", "local").details["copies"] == 1

    # Each clears by its own source.
    _journal(api, "storage.audit_completed", audit_id="a2")
    _journal(api, "recovery.drill_completed", outcome="identical", offers={}, report_units=[])
    record_tsa_check(api.runtime.settings, ok=True, detail="ok")
    with transaction(api.runtime.sessions) as session:
        session.execute(update(ObjectCopy).values(quarantine_ends_at=None))
    _round(api)
    assert _standing(api) == {("witness_refused", "ad35")}  # evidence: never cleared by itself


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_mail_over_tls_checks_the_servers_certificate(
    two_sites: Api, tmp_path: Path, security: str
) -> None:
    """The production modes: STARTTLS (aiosmtpd requires it before MAIL) and implicit TLS, the
    relay's certificate verified against the commune's own CA (SAE_ALERT_SMTP_CA_FILE)."""
    cert, key = tmp_path / "relay.pem", tmp_path / "relay.key"
    subprocess.run(  # noqa: S603
        [
            openssl(),
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=relay",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    flags = ("--tlscert", "--tlskey") if security == "starttls" else ("--smtpscert", "--smtpskey")
    server = SmtpServer(
        tmp_path / "tls-maildir", _free_port(), flags[0], str(cert), flags[1], str(key)
    )
    server.start()
    try:
        _configure(
            two_sites,
            alert_smtp_host="127.0.0.1",
            alert_smtp_port=server.port,
            alert_smtp_security=security,
            alert_smtp_timeout_seconds=5.0,
            alert_from="sae@mairie.example",
            alert_to=["dsi@mairie.example"],
        )
        _round(two_sites)
        with _Outage(two_sites, "site-a"):
            # Without the CA, the relay's certificate is refused: nothing sent, retried later.
            assert _round(two_sites) == 0
            alert = _alert(two_sites, "offer_down", "site-a")
            assert alert.last_error is not None
            assert "CERTIFICATE_VERIFY_FAILED" in alert.last_error
            assert server.messages() == []
            _configure(two_sites, alert_smtp_ca_file=cert)
            with transaction(two_sites.runtime.sessions) as session:
                session.execute(update(Alert).values(next_attempt_at=utcnow()))
            assert _round(two_sites) == 1
            [mail] = server.wait_for(1)
            assert mail["To"] == "dsi@mairie.example"
    finally:
        server.stop()


def test_an_older_observation_of_another_process_does_not_flap_the_alert(api: Api) -> None:
    """Each process knows the TSA's last check it saw: one that checked earlier must neither
    clear an alert raised on a later failure nor raise one cleared by a later success."""
    from datetime import timedelta

    from sae.alerts.service import TSA_DOWN, Change, apply

    settings = api.runtime.settings
    t0 = utcnow() - timedelta(minutes=10)
    down = {"tsa": "intégrée", "detail": "timeout"}

    def observe(ok: bool, at: Any) -> None:
        with transaction(api.runtime.sessions) as session:
            apply(session, [Change(TSA_DOWN, "", None if ok else dict(down), at)], settings)

    observe(False, t0 + timedelta(minutes=5))  # process A: failed at +5
    observe(True, t0)  # process B: its last check, at +0, succeeded
    assert ("tsa_down", "") in _standing(api)
    observe(True, t0 + timedelta(minutes=6))  # B checks again, later: back
    assert ("tsa_down", "") not in _standing(api)
    observe(False, t0 + timedelta(minutes=5))  # A's old failure, seen again: not news
    assert ("tsa_down", "") not in _standing(api)
    observe(False, t0 + timedelta(minutes=7))  # a newer failure: a new alert
    assert ("tsa_down", "") in _standing(api)
