"""Authentication and authorisation errors."""

from sae.errors import BadRequest, Forbidden, Unauthorized


class MissingToken(Unauthorized):
    code = "auth.missing_token"


class InvalidToken(Unauthorized):
    code = "auth.invalid_token"


class RoleNotAllowed(Forbidden):
    code = "auth.role_forbidden"


class ProducerNotAllowed(Forbidden):
    code = "auth.producer_forbidden"


class UnknownRole(BadRequest):
    code = "auth.unknown_role"
