"""Authentication and authorisation errors."""

from sae.errors import BadRequest, Conflict, Forbidden, NotFound, TooManyRequests, Unauthorized


class MissingToken(Unauthorized):
    code = "auth.missing_token"


class InvalidToken(Unauthorized):
    code = "auth.invalid_token"


class TokenExpired(InvalidToken):
    """The token's expiry (or its idle limit) has passed: ask for a new one."""

    code = "auth.token_expired"


class AccountDisabled(InvalidToken):
    """The token's account is disabled: none of its tokens is accepted."""

    code = "auth.account_disabled"


class InvalidCredentials(Unauthorized):
    """Unknown login, wrong password or disabled account (never says which)."""

    code = "auth.invalid_credentials"


class TooManyAttempts(TooManyRequests):
    """Too many refused sign-ins for this account or from this address: wait and retry."""

    code = "auth.too_many_attempts"


class RoleNotAllowed(Forbidden):
    code = "auth.role_forbidden"


class ProducerNotAllowed(Forbidden):
    code = "auth.producer_forbidden"


class UnknownRole(BadRequest):
    code = "auth.unknown_role"


class InvalidAccount(BadRequest):
    """A login, kind, source, password or producer list that an account cannot have."""

    code = "auth.invalid_account"


class UserExists(Conflict):
    code = "auth.user_exists"


class UnknownUser(NotFound):
    code = "auth.unknown_user"


class UnknownToken(NotFound):
    code = "auth.unknown_token"
