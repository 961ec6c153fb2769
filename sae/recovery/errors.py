"""Errors of recovery: the rebuild of the catalogue from an offer (``sae rebuild``), backups and
restores (``sae backup``, ``sae restore``), each with a stable code.

::

    Conflict (409)
    └── RebuildTargetNotEmpty   the target catalogue holds rows that no rebuild of it left
    UnprocessableEntity (422)
    └── RebuildStopped          what the offer holds does not verify: the rebuild stops
        ├── SegmentInvalid      a journal segment (format, gap, count, index, root, head)
        └── DescriptionInvalid  a transfer's description (``transfers/<id>.zip``)

    BadRequest (400)
    ├── BackupRefused           recovery.backup_refused: this catalogue cannot be backed up
    │                           this way (PostgreSQL: pg_dump, docs/recovery.md; a destination
    │                           inside the data directory)
    └── BackupInvalid           recovery.backup_invalid: a backup that does not check (a file
                                altered or missing, a MANIFEST of another format)
    Conflict (409)
    └── RestoreRefused          recovery.restore_refused: the target holds a catalogue or keys
                                (without --force), or the offer does not continue the backup's
                                journal
    ServiceUnavailable (503)
    ├── BackupFailed            recovery.backup_failed: the backup could not be written (DEST
    │                           full or unwritable, the catalogue unreadable); nothing kept
    └── RestoreFailed           recovery.restore_failed: putting back stopped midway (a disk
                                full): what was set aside and written is listed

A stop names what is wrong (``key``: the segment's or the description's key on the offer;
``kind``: what check failed) and is never papered over: what was committed before it stays,
marked as a rebuild in progress, and the same command resumes once the offer is repaired.
"""

from __future__ import annotations

from sae.errors import BadRequest, Conflict, ServiceUnavailable, UnprocessableEntity


class RebuildTargetNotEmpty(Conflict):
    """The target database already holds a catalogue (or another offer's rebuild)."""

    code = "rebuild.target_not_empty"


class RebuildStopped(UnprocessableEntity):
    """The offer's content does not verify; ``key`` and ``kind`` say where and what."""

    code = "rebuild.stopped"

    def __init__(self, key: str, kind: str, message: str) -> None:
        super().__init__(f"{key}: {kind}: {message}", key=key, kind=kind)
        self.key = key
        self.kind = kind


class SegmentInvalid(RebuildStopped):
    """A journal segment that does not verify (or is missing: a gap)."""

    code = "rebuild.segment_invalid"


class DescriptionInvalid(RebuildStopped):
    """A transfer's description that is missing, unreadable or contradicts the journal."""

    code = "rebuild.description_invalid"


class BackupRefused(BadRequest):
    code = "recovery.backup_refused"
    title = "Backup refused"


class BackupInvalid(BadRequest):
    code = "recovery.backup_invalid"
    title = "Backup invalid"


class RestoreRefused(Conflict):
    code = "recovery.restore_refused"
    title = "Restore refused"


class BackupFailed(ServiceUnavailable):
    code = "recovery.backup_failed"
    title = "Backup failed"


class RestoreFailed(ServiceUnavailable):
    code = "recovery.restore_failed"
    title = "Restore failed"
