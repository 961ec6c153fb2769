"""Sending the SIPs of a plan: to a running SAE over HTTP, or straight into the local one."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

import httpx

from sae.deposit.build import PlannedFile, batches, manifest, message_identifier, write_sip
from sae.deposit.state import DepositState

if TYPE_CHECKING:
    from sae.runtime import Runtime


#: The archive's answer to a MessageIdentifier it has already accepted.
DUPLICATE_CODE = "ingest.duplicate_transfer"


@dataclass
class BatchResult:
    """What became of one SIP."""

    number: int
    files: int
    status: str  # OK | DUPLICATE (already archived) | KO | ERROR
    transfer_id: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    message_identifier: str = ""
    size: int = 0
    units: int = 0
    #: The ATR's ReplyCode (OK, WARNING, KO), when the archive answered one.
    reply_code: str | None = None

    @property
    def done(self) -> bool:
        """The files of the batch are archived (now, or by an earlier run)."""
        return self.status in ("OK", "DUPLICATE")


class Target(Protocol):
    """Where SIPs go: ``send(path) -> (http_status, json_body)``; ``rules()`` the referential."""

    #: What the state file records as the archive (its URL, or ``local``).
    name: str

    def rules(self) -> list[dict[str, Any]]:
        """The referential's rules (``id``, ``type``, ``value``, ``meta``)."""
        ...

    def send(
        self, sip: Path, progress: Callable[[int], None] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Deposit one SIP; ``progress`` is given the bytes sent as they go."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class _Upload:
    """A SIP's file as httpx sends it (its length known, so no chunked encoding), telling
    ``progress`` how much has gone."""

    def __init__(self, fh: BinaryIO, progress: Callable[[int], None] | None) -> None:
        self.fh = fh
        self.progress = progress

    def fileno(self) -> int:
        return self.fh.fileno()

    def read(self, size: int = -1) -> bytes:
        chunk = self.fh.read(size)
        if chunk and self.progress is not None:
            self.progress(len(chunk))
        return chunk

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(1024 * 1024):
            yield chunk


class HttpTarget:
    """A running SAE, reached with a depositor token."""

    def __init__(self, server: str, token: str, *, timeout: float = 3600) -> None:
        self.name = server.rstrip("/")
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

    def send(
        self, sip: Path, progress: Callable[[int], None] | None = None
    ) -> tuple[int, dict[str, Any]]:
        with sip.open("rb") as fh:
            response = self.client.post(
                "/api/v1/transfers",
                content=_Upload(fh, progress),
                headers={"Content-Type": "application/zip", "Accept": "application/json"},
            )
        try:
            body: dict[str, Any] = response.json()
        except ValueError:
            body = {"detail": response.text[:500]}
        return response.status_code, body


class LocalTarget:
    """The SAE of this machine (same settings as ``sae serve``), without HTTP."""

    name = "local"

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

    def send(
        self, sip: Path, progress: Callable[[int], None] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Deposit one SIP as the API does (``sae.ingest.deposit.ingest_and_commit``): the
        commit, the removal of the copies of a duplicate, the tree head asked for after it;
        answered as the API answers (status, and the body's fields the runner reads)."""
        from sae.auth.service import Principal
        from sae.errors import SAEError
        from sae.ingest.deposit import ingest_and_commit

        principal = Principal(token_id="cli", role="admin", label="sae deposit (local)")  # noqa: S106
        try:
            outcome = ingest_and_commit(self.runtime, principal, sip)
        except SAEError as exc:  # reported per batch; the other batches go on
            return exc.status, exc.problem()
        except Exception as exc:  # a bug or a broken installation: said, not hidden
            return 500, {"detail": str(exc)}
        if progress is not None:
            progress(sip.stat().st_size)
        t = outcome.transfer
        return (201 if outcome.accepted else 422), {
            "transfer_id": t.id,
            "status": t.status,
            "errors": t.errors,
            "warnings": t.warnings,
            "units": [{"id": u.id} for u in outcome.units],
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
    state: DepositState | None = None,
    on_batch: Callable[[BatchResult], None] | None = None,
    on_bytes: Callable[[int], None] | None = None,
    workdir: Path | None = None,
) -> list[BatchResult]:
    """Build and send every SIP; a refused batch does not stop the others, an unreachable
    archive or a refused token does. Each batch's MessageIdentifier is derived from its content
    (``build.message_identifier``); an acknowledged batch, or one the archive says it already
    holds, is recorded in ``state`` at once. ``on_bytes`` is given the files' bytes as they
    are sent (a batch's total once answered)."""
    results = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for number, batch in enumerate(batches(items, max_files, max_bytes), start=1):
            size = sum(item.size for item in batch)
            message_id = message_identifier(
                batch, producer=producer, archival_agency=archival_agency, version=version
            )
            xml = manifest(
                batch,
                producer=producer,
                archival_agency=archival_agency,
                message_identifier=message_id,
                version=version,
                known_rules=known_rules,
            )
            sent = 0

            def uploaded(count: int, size: int = size) -> None:
                nonlocal sent
                step = min(count, size - sent)  # the SIP is a little larger than its files
                if step > 0 and on_bytes is not None:
                    on_bytes(step)
                sent += max(step, 0)

            unreachable = False
            sip = write_sip(batch, xml, Path(tmp) / f"{message_id}.zip")
            try:
                status, body = target.send(sip, uploaded)
            except httpx.TransportError as exc:
                status, body = 0, {"detail": f"archive injoignable : {exc}"}
                unreachable = True
            finally:
                sip.unlink(missing_ok=True)
            # A token the archive refuses refuses every batch alike: said once, not N times.
            unreachable = unreachable or status in (401, 403)
            result = _result(number, batch, size, message_id, status, body)
            if result.done:
                uploaded(size)
                if state is not None:
                    files = [[item.uri, item.sha512] for item in batch]
                    outcome = "accepted" if result.status == "OK" else "already_archived"
                    state.record(message_id, outcome, result.transfer_id, files)
            results.append(result)
            if on_batch is not None:
                on_batch(result)
            if unreachable:
                break
    return results


def _result(
    number: int,
    batch: Sequence[PlannedFile],
    size: int,
    message_id: str,
    status: int,
    body: dict[str, Any],
) -> BatchResult:
    """A batch's outcome from the archive's answer."""
    if status == 201:
        warnings = list(body.get("warnings") or [])
        return BatchResult(
            number,
            len(batch),
            "OK",
            body.get("transfer_id"),
            units=len(body.get("units") or []) or len(batch),
            reply_code="WARNING" if warnings else "OK",
            message_identifier=message_id,
            size=size,
        )
    if status == 409 and body.get("code") == DUPLICATE_CODE:
        return BatchResult(
            number,
            len(batch),
            "DUPLICATE",
            body.get("first_transfer"),
            units=len(batch),
            message_identifier=message_id,
            size=size,
        )
    if body.get("status") == "KO":
        return BatchResult(
            number,
            len(batch),
            "KO",
            body.get("transfer_id"),
            list(body.get("errors", [])),
            reply_code="KO",
            message_identifier=message_id,
            size=size,
        )
    return BatchResult(
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
        size,
    )
