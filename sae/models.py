"""Imports every table so that ``Base.metadata`` is complete (Alembic, tests, init)."""

from sae.access.models import Derogation, DerogationUnit
from sae.alerts.models import Alert, AlertCursor
from sae.auth.models import ApiToken, SignInFailure, User
from sae.catalog.models import ArchiveUnit, DataObject, DataObjectGroup, UnitLink, UnitRule
from sae.db import Base
from sae.ingest.models import Transfer
from sae.journal.models import Event
from sae.leases import Lease
from sae.retention.models import Rule
from sae.storage.models import MetadataCopy, ObjectCopy

__all__ = [
    "Alert",
    "AlertCursor",
    "ApiToken",
    "ArchiveUnit",
    "Base",
    "DataObject",
    "DataObjectGroup",
    "Derogation",
    "DerogationUnit",
    "Event",
    "Lease",
    "MetadataCopy",
    "ObjectCopy",
    "Rule",
    "SignInFailure",
    "Transfer",
    "UnitLink",
    "UnitRule",
    "User",
]
