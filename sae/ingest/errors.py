"""Ingest errors. A refused SIP is described by faults (code, message, where), not exceptions."""

from __future__ import annotations

import enum
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


class Refusal(enum.Enum):
    """Why a SIP was refused, as its answer says it (the API: 400, 422, 503)."""

    #: The SIP could not be read: not a usable zip, no manifest where it belongs, or a manifest
    #: that is not well-formed XML. Nothing of the transfer is known.
    UNREADABLE = "unreadable"
    #: The SIP was read and is wrong: the manifest, the files against it, the rules it names.
    INVALID = "invalid"
    #: Not the SIP's fault: an offer failed to store or read back a copy. Sending it again may
    #: succeed.
    STORAGE_UNAVAILABLE = "storage_unavailable"


class SipRefused(Exception):  # noqa: N818 - a control-flow signal, not a caller-facing error
    """Raised inside the ingest pipeline to stop at the first step that found faults.

    ``kind`` is the refusal when the step raising knows it; left None (the zip reader, which
    reads both the manifest and the files), the pipeline decides by where it stopped: before
    the manifest was read, the SIP is unreadable; after, invalid.
    """

    def __init__(self, faults: list[IngestFault], kind: Refusal | None = None) -> None:
        super().__init__("; ".join(f"{f.code}: {f.message}" for f in faults))
        self.faults = faults
        self.kind = kind


class DuplicateTransfer(Conflict):
    code = "ingest.duplicate_transfer"


class SipTooLarge(PayloadTooLarge):
    code = "ingest.sip_too_large"


class NotAZip(UnsupportedMediaType):
    code = "ingest.media_type"


class CommitFailed(ServiceUnavailable):
    """The database did not take an accepted transfer (its copies are removed): retry."""

    code = "ingest.commit_failed"


class JournalNotOnOffers(ServiceUnavailable):
    """A transfer is committed, but its journal leaves could not be put on every offer: no 201
    (the promise is that nothing acknowledged can be lost with the database). The transfer
    stays; its leaves reach the offers with the next segment; sending the SIP again answers
    409 naming it."""

    code = "ingest.journal_not_on_offers"
