"""Catalog errors."""

from sae.errors import BadRequest, Forbidden, Gone, NotFound


class UnitNotFound(NotFound):
    code = "catalog.unit_not_found"


class ObjectNotFound(NotFound):
    code = "catalog.object_not_found"


class ObjectDestroyed(Gone):
    code = "catalog.object_destroyed"


class NotCommunicable(Forbidden):
    code = "access.not_communicable"


class InvalidQuery(BadRequest):
    code = "catalog.invalid_query"
