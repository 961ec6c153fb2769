"""Retention errors (referential, holds, disposal circuit).

::

    UnprocessableEntity 422
    ├── InvalidReferential        rules.invalid_referential
    ├── DurationBelowMinimum      rules.duration_below_minimum   (alert journaled)
    └── InvalidVisa               disposal.invalid_visa
    Conflict 409
    ├── RuleInUse                 rules.rule_in_use
    ├── ReferentialChanged        rules.referential_changed      (since the preview)
    ├── WrongState                disposal.wrong_state
    ├── FourEyes                  disposal.four_eyes             (approver = builder/submitter)
    ├── ExecutionRefused          disposal.execution_refused     (held, changed, not due…)
    ├── ExecutionInProgress       disposal.execution_in_progress
    └── StorageRefused            disposal.storage_refused       (an offer kept a copy)
    NotFound 404
    ├── ListNotFound              disposal.list_not_found
    └── HoldNotFound              holds.not_found
    SAEError 500
    └── ReplayMismatch            retention.replay_mismatch      (a rebuild stops on the leaf)
"""

from sae.errors import BadRequest, Conflict, NotFound, SAEError, UnprocessableEntity


class InvalidReferential(UnprocessableEntity):
    """The referential file is refused; ``problems`` lists every line at fault."""

    code = "rules.invalid_referential"


class RuleInUse(Conflict):
    """A rule used by archive units would be deleted (or a used HoldRule changed its kind)."""

    code = "rules.rule_in_use"


class ReferentialChanged(Conflict):
    """The referential changed between a preview and the import meant to apply it."""

    code = "rules.referential_changed"


class DurationBelowMinimum(UnprocessableEntity):
    """A rule's duration is below the configured minimum of its category (alert journaled)."""

    code = "rules.duration_below_minimum"


class ListNotFound(NotFound):
    """No disposal list with this id."""

    code = "disposal.list_not_found"


class HoldNotFound(NotFound):
    """No hold with this id."""

    code = "holds.not_found"


class WrongState(Conflict):
    """The list is not in a state that allows this step."""

    code = "disposal.wrong_state"


class FourEyes(Conflict):
    """The archivist approving a destruction list is the one who built or submitted it
    (``SAE_DISPOSAL_FOUR_EYES``): another archivist must approve."""

    code = "disposal.four_eyes"


class InvalidVisa(UnprocessableEntity):
    """The visa is incomplete or inconsistent (no document, future date, unknown unit…)."""

    code = "disposal.invalid_visa"


class ExecutionRefused(Conflict):
    """Execution refused: not visa'd, or a unit became held, changed or is no longer due."""

    code = "disposal.execution_refused"


class ExecutionInProgress(Conflict):
    """Another execution of the same list holds the claim."""

    code = "disposal.execution_in_progress"


class StorageRefused(Conflict):
    """An offer refused to delete a copy; the execution stopped and can be resumed."""

    code = "disposal.storage_refused"


class InvalidHold(UnprocessableEntity):
    """The hold request is inconsistent (no unit, an end date in the past…)."""

    code = "holds.invalid"


class InvalidBordereauFormat(BadRequest):
    code = "disposal.bordereau_format"


class ReplayMismatch(SAEError):
    """A journal leaf of retention cannot be replayed exactly: a key its replay needs is
    missing, it names a list, hold, unit or object the rebuilt catalogue lacks, or what the
    replay made differs from the digest the leaf carries. The rebuild stops on it (``leaf``)."""

    code = "retention.replay_mismatch"
    title = "Journal replay mismatch"
