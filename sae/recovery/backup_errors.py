"""Errors of backups and restores (``sae backup``, ``sae restore``), each with a stable code.

::

    SAEError
    ├── BadRequest
    │   ├── BackupRefused            recovery.backup_refused (400): this catalogue cannot be
    │   │                            backed up this way (PostgreSQL: pg_dump, docs/recovery.md;
    │   │                            a destination inside the data directory)
    │   └── BackupInvalid            recovery.backup_invalid (400): a backup that does not check
    │                                (a file altered or missing, a MANIFEST of another format)
    ├── Conflict
    │   └── RestoreRefused           recovery.restore_refused (409): the target holds a catalogue
    │                                or keys (without --force), or the offer does not continue the
    │                                backup's journal
    └── ServiceUnavailable
        ├── BackupFailed             recovery.backup_failed (503): the backup could not be
        │                            written (DEST full or unwritable, the catalogue unreadable);
        │                            nothing of it was kept
        ├── RestoreFailed            recovery.restore_failed (503): putting back stopped midway
        │                            (a disk full): what was set aside and written is listed
        └── CatchUpUnavailable       recovery.catch_up_unavailable (503): the offer holds changes
                                     made after the backup and this version cannot replay them
"""

from __future__ import annotations

from sae.errors import BadRequest, Conflict, ServiceUnavailable


class BackupRefused(BadRequest):
    code = "recovery.backup_refused"
    title = "Backup refused"


class BackupInvalid(BadRequest):
    code = "recovery.backup_invalid"
    title = "Backup invalid"


class RestoreRefused(Conflict):
    code = "recovery.restore_refused"
    title = "Restore refused"


class CatchUpUnavailable(ServiceUnavailable):
    code = "recovery.catch_up_unavailable"
    title = "Catch-up from the offers unavailable"


class BackupFailed(ServiceUnavailable):
    code = "recovery.backup_failed"
    title = "Backup failed"


class RestoreFailed(ServiceUnavailable):
    code = "recovery.restore_failed"
    title = "Restore failed"
