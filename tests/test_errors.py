"""The error tree drawn in ``sae.errors``' docstring is the real one (as httpx tests its
``__all__``): every class drawn exists under the parent drawn, with the status written, and
every class of the module is drawn."""

from __future__ import annotations

import inspect
import re

import sae.errors
from sae.errors import SAEError

#: One line of the tree: the drawing (``│``, ``├──``, ``└──``, spaces), a class name, and
#: optionally the HTTP status (``404``) before the description.
LINE = re.compile(r"^(?P<indent>[ │├└─]*)(?P<name>[A-Z]\w*)(?:\s*\([^)]*\))?\s*(?P<status>\d{3})?")


def drawn_tree() -> dict[str, tuple[str | None, int | None]]:
    """Each class drawn in the docstring: (its parent drawn, the status written)."""
    doc = sae.errors.__doc__ or ""
    block = doc.split("::", 1)[1].split("\n\n")[1]  # the literal block after "::"
    margin = min(len(line) - len(line.lstrip()) for line in block.splitlines() if line.strip())
    drawn: dict[str, tuple[str | None, int | None]] = {}
    parents: list[tuple[int, str]] = []  # (column of the name, name), the current branch
    for line in block.splitlines():
        if not line.strip():
            continue
        match = LINE.match(line[margin:])
        assert match, f"unreadable line of the error tree: {line!r}"
        column = len(match["indent"])
        while parents and parents[-1][0] >= column:
            parents.pop()
        name = match["name"]
        assert name not in drawn, f"{name} is drawn twice"
        drawn[name] = (parents[-1][1] if parents else None, int(match["status"] or 0) or None)
        parents.append((column, name))
    return drawn


def module_classes() -> dict[str, type[SAEError]]:
    return {
        name: cls
        for name, cls in inspect.getmembers(sae.errors, inspect.isclass)
        if cls.__module__ == sae.errors.__name__ and issubclass(cls, SAEError)
    }


def test_every_class_drawn_exists_under_its_parent_with_its_status() -> None:
    classes = module_classes()
    for name, (parent, status) in drawn_tree().items():
        assert name in classes, f"the tree draws {name}, which sae.errors does not define"
        cls = classes[name]
        if parent is None:
            assert cls is SAEError, f"{name} is drawn as the root"
        else:
            assert cls.__bases__ == (classes[parent],), f"{name} is drawn under {parent}"
        if status is not None:
            assert cls.status == status, f"{name}: the tree says {status}, the class {cls.status}"


def test_every_class_of_the_module_is_drawn() -> None:
    assert sorted(module_classes()) == sorted(drawn_tree())


def test_the_tree_reader_reads_parents_and_statuses() -> None:
    """The checks above would catch the class that once stood in the tree without existing."""
    tree = drawn_tree()
    assert tree["SpoolFailed"] == ("ServiceUnavailable", 503)
    assert tree["BadRequest"] == ("SAEError", 400)
    assert "InvalidTransfer" not in module_classes()
