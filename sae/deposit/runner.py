"""Sending the SIPs of a plan: to a running SAE over HTTP, or straight into the local one."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from sae.deposit.build import PlannedFile, batches, manifest, write_sip

if TYPE_CHECKING:
    from sae.runtime import Runtime


@dataclass
class BatchResult:
    """What became of one SIP."""

    number: int
    files: int
    status: str  # OK | KO | ERROR
    transfer_id: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    message_identifier: str = ""


class Target(Protocol):
    """Where SIPs go: ``send(path) -> (http_status, json_body)``; ``rules()`` the referential."""

    def rules(self) -> list[dict[str, Any]]:
        """The referential's rules (``id``, ``type``, ``value``, ``meta``)."""
        ...

    def send(self, sip: Path) -> tuple[int, dict[str, Any]]:
        """Deposit one SIP."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class HttpTarget:
    """A running SAE, reached with a depositor token."""

    def __init__(self, server: str, token: str, *, timeout: float = 3600) -> None:
        self.client = httpx.Client(
            base_url=server.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def close(self) -> None:
        self.client.close()

    def rules(self) -> list[dict[str, Any]]:
        response = self.client.get("/api/v1/rules")
        response.raise_for_status()
        body: list[dict[str, Any]] = response.json()
        return body

    def send(self, sip: Path) -> tuple[int, dict[str, Any]]:
        with sip.open("rb") as fh:
            response = self.client.post(
                "/api/v1/transfers",
                content=fh,
                headers={"Content-Type": "application/zip", "Accept": "application/json"},
            )
        try:
            body: dict[str, Any] = response.json()
        except ValueError:
            body = {"detail": response.text[:500]}
        return response.status_code, body


class LocalTarget:
    """The SAE of this machine (same settings as ``sae serve``), without HTTP."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def close(self) -> None:
        """Nothing to release: the runtime is the caller's (the ``sae deposit`` command's)."""

    def rules(self) -> list[dict[str, Any]]:
        from sae.retention.models import Rule

        with self.runtime.sessions() as session:
            return [
                {"id": r.id, "type": r.type, "value": r.value, "meta": getattr(r, "meta", None)}
                for r in session.query(Rule).all()
            ]

    def send(self, sip: Path) -> tuple[int, dict[str, Any]]:
        """Deposit one SIP as the API does (``sae.ingest.deposit.ingest_and_commit``): the
        commit, the removal of the copies of a duplicate, the tree head asked for after it."""
        from sae.auth.service import Principal
        from sae.ingest.deposit import ingest_and_commit
        from sae.ingest.errors import DuplicateTransfer

        principal = Principal(token_id="cli", role="admin", label="sae deposit (local)")  # noqa: S106
        try:
            outcome = ingest_and_commit(self.runtime, principal, sip)
        except Exception as exc:  # reported per batch; the other batches go on
            detail = getattr(exc, "detail", str(exc))
            return 409 if isinstance(exc, DuplicateTransfer) else 500, {"detail": detail}
        t = outcome.transfer
        return (201 if outcome.accepted else 422), {
            "transfer_id": t.id,
            "status": t.status,
            "errors": t.errors,
        }


def send_all(
    target: Target,
    items: Sequence[PlannedFile],
    *,
    producer: str,
    archival_agency: str,
    max_files: int,
    max_bytes: int,
    version: str = "2.2",
    known_rules: dict[str, Any] | None = None,
    on_batch: Callable[[BatchResult], None] | None = None,
    workdir: Path | None = None,
) -> list[BatchResult]:
    """Build and send every SIP; a refused batch does not stop the others."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    results = []
    all_batches = list(batches(items, max_files, max_bytes))
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for number, batch in enumerate(all_batches, start=1):
            message_id = f"DEPOT-{producer}-{stamp}-{number:03d}"
            xml = manifest(
                batch,
                producer=producer,
                archival_agency=archival_agency,
                message_identifier=message_id,
                version=version,
                known_rules=known_rules,
            )
            sip = write_sip(batch, xml, Path(tmp) / f"{message_id}.zip")
            try:
                status, body = target.send(sip)
            except httpx.HTTPError as exc:
                status, body = 0, {"detail": f"serveur injoignable : {exc}"}
            finally:
                sip.unlink(missing_ok=True)
            if status == 201:
                result = BatchResult(
                    number, len(batch), "OK", body.get("transfer_id"), message_identifier=message_id
                )
            elif body.get("status") == "KO":
                result = BatchResult(
                    number,
                    len(batch),
                    "KO",
                    body.get("transfer_id"),
                    list(body.get("errors", [])),
                    message_id,
                )
            else:
                result = BatchResult(
                    number,
                    len(batch),
                    "ERROR",
                    None,
                    [
                        {
                            "code": str(body.get("code", status)),
                            "message": str(body.get("detail", "")),
                            "where": None,
                        }
                    ],
                    message_id,
                )
            results.append(result)
            if on_batch is not None:
                on_batch(result)
    return results
