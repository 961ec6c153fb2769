"""Storage offers: write-once copies on the local WORM directory and on S3 Object Lock.

Public API: :mod:`sae.storage.base` (the ``StorageOffer`` protocol, ``StoredObject``, errors),
:mod:`sae.storage.service` (``store_copies``, ``open_verified``, ``discard_copies``, and the
acts on copies ``delete_copies``, ``extend_copies``, ``hold_copies``),
:mod:`sae.storage.repository` (queries, among them the copies of objects, groups, transfers),
:mod:`sae.storage.offers` (``load_offers``, ``check_offers``, ``offers_health``),
:mod:`sae.storage.audit` (fixity audit job), :mod:`sae.storage.fsck` (reconciliation),
:mod:`sae.storage.api` (``router``), :mod:`sae.storage.cli` (``audit_command``,
``fsck_command``). See docs/storage.md.
"""
