"""Imports every table so that ``Base.metadata`` is complete (Alembic, tests, init)."""

from sae.access.models import Communication, Derogation, DerogationUnit
from sae.alerts.models import Alert, AlertCursor
from sae.auth.models import ApiToken, SignInFailure, User
from sae.catalog.models import (
    ArchiveUnit,
    DataObject,
    DataObjectGroup,
    ObjectText,
    UnitLink,
    UnitRule,
)
from sae.contracts.models import ArchivalProfile, Contract
from sae.db import Base
from sae.extraction.models import OcrJob
from sae.ingest.models import Transfer
from sae.journal.models import Event
from sae.leases import Lease
from sae.pastell.models import PastellChunkSession, PastellMessage
from sae.retention.models import Rule
from sae.storage.models import MetadataCopy, ObjectCopy

__all__ = [
    "Alert",
    "AlertCursor",
    "ApiToken",
    "ArchivalProfile",
    "ArchiveUnit",
    "Base",
    "Communication",
    "Contract",
    "DataObject",
    "DataObjectGroup",
    "Derogation",
    "DerogationUnit",
    "Event",
    "Lease",
    "MetadataCopy",
    "OcrJob",
    "ObjectText",
    "ObjectCopy",
    "PastellChunkSession",
    "PastellMessage",
    "Rule",
    "SignInFailure",
    "Transfer",
    "UnitLink",
    "UnitRule",
    "User",
]
