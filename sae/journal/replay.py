"""The journal's own events and the start's configuration events, for a rebuild's replay.

None changes the catalogue: a rebuild copies them as leaves (the key history is read from the
leaves themselves, see :mod:`sae.journal.keyhistory`), and the configuration digests describe
files outside the catalogue.
"""

from __future__ import annotations

from sae.config_journal import CONFIG_CHANGED, CONFIG_INITIAL
from sae.journal.keyhistory import KEY_PINNED, KEY_ROTATED
from sae.recovery.replay import changes_no_state

changes_no_state(KEY_PINNED, "the key history is read from the leaves, not from a table")
changes_no_state(
    KEY_ROTATED, "the key history is read from the leaves; the key file is the operator's"
)
changes_no_state(CONFIG_INITIAL, "digests of the configuration files at a first start")
changes_no_state(CONFIG_CHANGED, "digests of the configuration files that changed at a start")
