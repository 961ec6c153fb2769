"""Every event type SAE journals has a replay, or is declared to change no state (issue 17).

The types are found in the source: each ``append_event(…)`` / ``NewEvent(…)`` call's ``type=``
(a literal, or an f-string: a family, ``prefix*``), and in the modules that journal, the
``dict(type=…)`` and ``{"type": …}`` events built to be passed on (the audit's). A type added
without its replay fails here, named with the file that journals it: register it with
``@replays`` in its owner's ``replay`` module, or with ``changes_no_state`` and the reason.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from sae.recovery.replay import NO_STATE, REPLAYS, load_all

SAE = Path(__file__).resolve().parents[2] / "sae"
JOURNALING = {"append_event", "append_events", "NewEvent"}
EVENT_TYPE = re.compile(r"[a-z][a-z_]*(\.[a-z][a-z_]*)+")


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _constants(tree: ast.Module) -> dict[str, str]:
    """The module's ``NAME = "a.b"`` assignments (``type=EVENT`` names one of them)."""
    found: dict[str, str] = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node.value.value
    return found


def _type_of(node: ast.expr, constants: dict[str, str] | None = None) -> str | None:
    """A literal type (or a module constant holding one), or an f-string's family as
    ``prefix*`` (its text before the first placeholder)."""
    if isinstance(node, ast.Name) and constants and node.id in constants:
        node = ast.Constant(constants[node.id])
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value if EVENT_TYPE.fullmatch(node.value) else None
    if isinstance(node, ast.JoinedStr):
        prefix = ""
        for part in node.values:
            if not (isinstance(part, ast.Constant) and isinstance(part.value, str)):
                break
            prefix += part.value
        return f"{prefix}*"
    return None


def journaled_types() -> dict[str, set[str]]:
    """Event type (or ``prefix*`` family) -> the source files that journal it."""
    found: dict[str, set[str]] = {}
    for path in sorted(SAE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
        journals = any(_name(call.func) in JOURNALING for call in calls)
        if not journals or (path.name == "service.py" and path.parent.name == "journal"):
            continue  # the journal's own append_event passes its caller's type on
        where = str(path.relative_to(SAE.parent))
        constants = _constants(tree)
        for call in calls:
            if _name(call.func) not in JOURNALING | {"dict"}:
                continue
            for keyword in call.keywords:
                if keyword.arg == "type" and (type_ := _type_of(keyword.value, constants)):
                    found.setdefault(type_, set()).add(where)
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if (
                        isinstance(key, ast.Constant)
                        and key.value == "type"
                        and (type_ := _type_of(value, constants))
                    ):
                        found.setdefault(type_, set()).add(where)
    return found


def _covered(type_: str) -> bool:
    known = set(REPLAYS) | set(NO_STATE)
    if type_.endswith("*"):
        return any(t.startswith(type_[:-1]) for t in known)
    return type_ in known


def test_the_scan_finds_the_journal_s_types() -> None:
    """The scan itself works: it finds types of every kind of call site."""
    found = journaled_types()
    for expected in (
        "ingest.accepted",  # NewEvent in a list
        "hold.placed",  # append_event
        "storage.copy_damaged",  # dict(type=…) passed on as **event
        "disposal.certificate_archived",
    ):
        assert expected in found


def test_every_journaled_type_has_a_replay() -> None:
    load_all()
    missing = {
        type_: sorted(where)
        for type_, where in sorted(journaled_types().items())
        if not _covered(type_)
    }
    listing = "\n".join(f"  {t}  (journaled in {', '.join(w)})" for t, w in missing.items())
    assert not missing, (
        f"{len(missing)} journaled event type(s) with neither a replay (@replays) nor "
        f"changes_no_state:\n{listing}"
    )


def test_every_registered_type_is_journaled() -> None:
    """A registration for a type SAE never journals is a typo (the real type then has none)."""
    load_all()
    found = journaled_types()
    families = [t[:-1] for t in found if t.endswith("*")]
    stale = sorted(
        t
        for t in set(REPLAYS) | set(NO_STATE)
        if t not in found and not any(t.startswith(f) for f in families)
    )
    assert stale == []


def test_every_journaled_type_has_a_french_label() -> None:
    """The console's journal names every event in French (an archivist reads it)."""
    from sae.console.format import EVENT_TYPE

    missing = sorted(
        t for t in journaled_types() if not t.endswith("*") and t not in EVENT_TYPE
    )
    assert missing == [], f"add a French label in sae.console.format.EVENT_TYPE: {missing}"
