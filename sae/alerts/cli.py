"""``sae alerts``: try the channels, list the alerts (registered on the main app by ``sae.cli``)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from sae.cli_support import make_console, opened_runtime, print_rows, settings_or_exit

alerts_app = typer.Typer(
    help="Alerts sent by mail and webhook (docs/operations.md).", no_args_is_help=True
)
err = make_console(stderr=True)
out = make_console()


@alerts_app.command("test")
def test_command() -> None:
    """Send a test message on every configured channel (SAE_ALERT_SMTP_*, SAE_ALERT_WEBHOOK_*).

    Exit 0 when every channel took it, 1 when one failed or none is configured.

    Example: ``SAE_ALERT_SMTP_HOST=smtp.mairie.example.fr SAE_ALERT_FROM=sae@mairie.example.fr
    SAE_ALERT_TO=dsi@mairie.example.fr sae alerts test``
    """
    from sae.alerts.channels import send_test

    results = send_test(settings_or_exit())
    if not results:
        err.print(
            "[red]no alert channel configured: set SAE_ALERT_SMTP_HOST or "
            "SAE_ALERT_WEBHOOK_URL (docs/operations.md)[/red]"
        )
        raise typer.Exit(1)
    for name, error in results:
        if error is None:
            out.print(f"{name}: sent")
        else:
            out.print(f"[red]{name}: failed — {escape(error)}[/red]")
    if any(error is not None for _, error in results):
        raise typer.Exit(1)


@alerts_app.command("list")
def list_command(
    include_cleared: Annotated[
        bool, typer.Option("--all", help="Also the alerts that have cleared.")
    ] = False,
) -> None:
    """List the alerts standing: condition, subject, since when, notifications sent, last error.

    Example: ``sae alerts list --all``
    """
    from sae.alerts.service import standing

    with opened_runtime() as runtime, runtime.sessions() as session:
        alerts = standing(session, include_cleared=include_cleared)
        rows = []
        for alert in alerts:
            state = "standing" if alert.active else "cleared"
            if alert.pending:
                state += ", to send"
            rows.append(
                (
                    alert.condition,
                    alert.subject,
                    alert.first_seen_at.isoformat(timespec="seconds"),
                    state,
                    str(alert.notifications),
                    alert.last_error or "",
                )
            )
    if not alerts:
        out.print("no alert standing" if not include_cleared else "no alert")
        return
    print_rows(out, ("condition", "subject", "since", "state", "sent", "last error"), rows)
