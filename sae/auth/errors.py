"""Authentication and authorisation errors."""

from sae.errors import BadRequest, Forbidden, ServiceUnavailable, Unauthorized


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


class SignInRefused(Unauthorized):
    """The directory or the identity provider did not let this person in (the message, in
    French, is shown on the sign-in page)."""

    code = "auth.sign_in_refused"


class NoRoleForGroups(Forbidden):
    """The person is known to the directory but none of their groups is mapped to a role."""

    code = "auth.no_mapped_group"


class DirectoryUnavailable(ServiceUnavailable):
    """The LDAP directory or the OpenID Connect provider cannot be asked right now."""

    code = "auth.directory_unavailable"
