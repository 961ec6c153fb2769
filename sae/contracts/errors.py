"""Contract and profile errors (the management of contracts; a SIP outside its contract is not
an exception but ATR faults, see :mod:`sae.contracts.service`).

::

    UnprocessableEntity 422
    ├── InvalidContract           contracts.invalid           (every problem listed)
    └── InvalidProfile            profiles.invalid            (not a usable RelaxNG grammar)
    NotFound 404
    ├── ContractNotFound          contracts.not_found
    └── ProfileNotFound           profiles.not_found
    Conflict 409
    ├── ContractExists            contracts.exists
    └── ProfileExists             profiles.exists
    PayloadTooLarge 413
    └── ProfileTooLarge           profiles.too_large
    SAEError 500
    └── ContractReplayMismatch    contracts.replay_mismatch   (a rebuild stops on the leaf)
"""

from sae.errors import Conflict, NotFound, PayloadTooLarge, SAEError, UnprocessableEntity


class InvalidContract(UnprocessableEntity):
    """The contract is refused; ``problems`` lists every clause at fault."""

    code = "contracts.invalid"


class InvalidProfile(UnprocessableEntity):
    """The profile is not a RelaxNG grammar SAE can apply; ``problems`` lists why."""

    code = "profiles.invalid"


class ContractNotFound(NotFound):
    code = "contracts.not_found"


class ProfileNotFound(NotFound):
    code = "profiles.not_found"


class ContractExists(Conflict):
    code = "contracts.exists"


class ProfileExists(Conflict):
    code = "profiles.exists"


class ProfileTooLarge(PayloadTooLarge):
    code = "profiles.too_large"


class ContractReplayMismatch(SAEError):
    """A contract or profile leaf cannot be replayed exactly (a rebuild stops)."""

    code = "contracts.replay_mismatch"
