"""Access errors: dérogations (L213-3).

::

    NotFound 404
    └── DerogationNotFound        access.derogation_not_found
    Conflict 409
    └── DerogationDecided         access.derogation_decided      (already granted or refused)
    UnprocessableEntity 422
    └── InvalidDerogation         access.invalid_derogation      (no unit, no purpose, a past date…)
    BadRequest 400
    └── InvalidRegisterQuery      access.invalid_register_query  (unknown basis or kind, bad period)
"""

from sae.errors import BadRequest, Conflict, NotFound, UnprocessableEntity


class DerogationNotFound(NotFound):
    code = "access.derogation_not_found"


class DerogationDecided(Conflict):
    code = "access.derogation_decided"


class InvalidDerogation(UnprocessableEntity):
    code = "access.invalid_derogation"


class InvalidRegisterQuery(BadRequest):
    code = "access.invalid_register_query"
