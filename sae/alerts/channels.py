"""Where alerts go: mail (SMTP) and a webhook (JSON, HMAC-signed), as the settings say.

Each channel sends one notification or raises; ``sae.alerts.service.send_pending`` retries
what failed. Neither logs a credential: the SMTP password and the webhook secret are used,
never formatted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import httpx

from sae import __version__
from sae.alerts.service import Channel, Notification
from sae.config import Settings

SIGNATURE_HEADER = "X-SAE-Signature"


def channels(settings: Settings) -> list[Channel]:
    """The channels the settings configure (none: alerts are only logged and counted)."""
    found: list[Channel] = []
    if settings.alert_smtp_host:
        found.append(("mail", lambda n: send_mail(settings, n)))
    if settings.alert_webhook_url:
        found.append(("webhook", lambda n: send_webhook(settings, n)))
    return found


def smtp_port(settings: Settings) -> int:
    if settings.alert_smtp_port is not None:
        return settings.alert_smtp_port
    return {"ssl": 465, "starttls": 587}.get(settings.alert_smtp_security, 25)


def mail_message(settings: Settings, notification: Notification) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = notification.title
    message["From"] = settings.alert_from or ""
    message["To"] = ", ".join(settings.alert_to)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="sae.alerts")
    message["X-SAE-Alert"] = f"{notification.condition}; {notification.subject_key}"
    message.set_content(notification.body)  # UTF-8, as the French text needs
    return message


def send_mail(settings: Settings, notification: Notification) -> None:
    """Send the notification by SMTP (STARTTLS, SSL or plain, as ``SAE_ALERT_SMTP_SECURITY``)."""
    assert settings.alert_smtp_host is not None
    host, port = settings.alert_smtp_host, smtp_port(settings)
    timeout = settings.alert_smtp_timeout_seconds
    # The server's certificate is always verified: against SAE_ALERT_SMTP_CA_FILE when the
    # commune's relay has a certificate of its own CA, else against the system's CAs.
    ca_file = settings.alert_smtp_ca_file
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
    client: smtplib.SMTP
    if settings.alert_smtp_security == "ssl":
        client = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
    else:
        client = smtplib.SMTP(host, port, timeout=timeout)
    with client:
        if settings.alert_smtp_security == "starttls":
            client.starttls(context=context)
        if settings.alert_smtp_user and settings.alert_smtp_password is not None:
            client.login(settings.alert_smtp_user, settings.alert_smtp_password.get_secret_value())
        client.send_message(mail_message(settings, notification))


def webhook_body(settings: Settings, notification: Notification) -> bytes:
    doc = {
        "condition": notification.condition,
        "subject": notification.subject_key,
        "title": notification.title,
        "text": notification.body,
        "details": notification.details,
        "active": notification.active,
        "reminder": notification.reminder,
        "first_seen_at": notification.first_seen_at.isoformat(),
        "origin": settings.origin,
        "version": __version__,
    }
    return json.dumps(doc, ensure_ascii=False, sort_keys=True, default=str).encode()


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of the body>``, as the receiver recomputes it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def send_webhook(settings: Settings, notification: Notification) -> None:
    """POST the notification as JSON; with a secret, signed in ``X-SAE-Signature``. Any answer
    other than 2xx is a failure (retried)."""
    assert settings.alert_webhook_url is not None
    body = webhook_body(settings, notification)
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if settings.alert_webhook_secret is not None:
        headers[SIGNATURE_HEADER] = signature(
            settings.alert_webhook_secret.get_secret_value(), body
        )
    response = httpx.post(settings.alert_webhook_url, content=body, headers=headers, timeout=20.0)
    if not response.is_success:
        raise RuntimeError(f"the webhook answered HTTP {response.status_code}")


def send_test(settings: Settings) -> list[tuple[str, str | None]]:
    """Send a test message on every configured channel: each channel's name and its error
    (None when it took the message). Nothing is recorded: it is not an alert."""
    from datetime import UTC, datetime

    from sae.alerts.texts import test_text

    title, body = test_text()
    notification = Notification(
        alert_id=0,
        condition="test",
        subject_key="",
        title=title,
        body=body,
        details={},
        first_seen_at=datetime.now(UTC),
        reminder=False,
        active=False,
    )
    results: list[tuple[str, str | None]] = []
    for name, send in channels(settings):
        try:
            send(notification)
            results.append((name, None))
        except Exception as exc:  # reported to the operator, who is testing exactly this
            results.append((name, f"{type(exc).__name__}: {exc}"))
    return results
