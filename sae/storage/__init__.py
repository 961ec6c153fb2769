"""Storage offers: write-once copies on the local WORM directory and on S3 Object Lock.

Public API: :mod:`sae.storage.base` (the ``StorageOffer`` protocol, ``StoredObject``, errors),
:mod:`sae.storage.service` (``store_copies``, ``open_verified``, ``discard_copies``),
:mod:`sae.storage.offers` (``load_offers``, ``offers_health``).
"""
