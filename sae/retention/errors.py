"""Referential errors."""

from sae.errors import Conflict, UnprocessableEntity


class InvalidReferential(UnprocessableEntity):
    """The referential file is refused; ``problems`` lists every line at fault."""

    code = "rules.invalid_referential"


class RuleInUse(Conflict):
    code = "rules.rule_in_use"
