"""Ingest errors. A refused SIP is described by faults (code, message, where), not exceptions."""

from __future__ import annotations

from dataclasses import dataclass

from sae.errors import Conflict, PayloadTooLarge, ServiceUnavailable, UnsupportedMediaType


@dataclass(frozen=True)
class IngestFault:
    """One reason a SIP is refused; becomes one line (Event) of the KO ATR."""

    code: str
    message: str
    where: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"code": self.code, "message": self.message, "where": self.where}


class SipRefused(Exception):  # noqa: N818 - a control-flow signal, not a caller-facing error
    """Raised inside the ingest pipeline to stop at the first step that found faults."""

    def __init__(self, faults: list[IngestFault]) -> None:
        super().__init__("; ".join(f"{f.code}: {f.message}" for f in faults))
        self.faults = faults


class DuplicateTransfer(Conflict):
    code = "ingest.duplicate_transfer"


class SipTooLarge(PayloadTooLarge):
    code = "ingest.sip_too_large"


class NotAZip(UnsupportedMediaType):
    code = "ingest.media_type"


class CommitFailed(ServiceUnavailable):
    """The database did not take an accepted transfer (its copies are removed): retry."""

    code = "ingest.commit_failed"
