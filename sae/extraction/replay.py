"""Replay of the server's OCR (see :mod:`sae.recovery.replay`): the PDF/A object it added to a
scan's group, its copies and its job, from the ``ocr.object_added`` leaf. Its text is derived
data: the rebuild reads it again with every PDF's (``sae.extraction.service``)."""

from __future__ import annotations

from datetime import datetime

from sae.catalog.models import DataObject
from sae.extraction.models import OcrJob
from sae.recovery.replay import LeafEvent, ReplayContext, replays
from sae.storage.models import ObjectCopy


@replays("ocr.object_added")
def _object_added(context: ReplayContext, event: LeafEvent) -> None:
    data = event.payload
    session = context.session
    master = session.get(DataObject, data["master_id"])
    if master is None or event.object_id is None:
        context.notes.append(
            f"leaf {event.index} ({event.type}): no master {data['master_id']} for its PDF/A"
        )
        return
    at = datetime.fromisoformat(data["at"])
    if session.get(DataObject, event.object_id) is None:
        session.add(DataObject(id=event.object_id, created_at=at, **data["object"]))
        session.flush()
        for copy in data["copies"]:
            ends = copy["quarantine_ends_at"]
            session.add(
                ObjectCopy(
                    object_id=event.object_id,
                    offer=copy["offer"],
                    key=copy["key"],
                    version_id=copy["version_id"],
                    size=copy["size"],
                    sha512=copy["sha512"],
                    stored_at=at,
                    quarantine_ends_at=datetime.fromisoformat(ends) if ends else None,
                )
            )
    job = session.get(OcrJob, master.id)
    if job is None:
        job = OcrJob(object_id=master.id, attempts=1)
        session.add(job)
    job.state = "done"
    job.error = None
    job.next_try_at = None
    job.derived_id = event.object_id
    job.updated_at = at
    session.flush()
