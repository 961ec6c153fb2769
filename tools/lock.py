"""``make lock``: write constraints.txt, the exact versions this venv runs SAE and its tests with.

Walks the requirements of ``sae[dev]`` (pyproject.toml) through the installed distributions'
metadata, extras and environment markers included, and pins each distribution reached to its
installed version; the build backend (``[build-system] requires``) and pip are pinned too. What
the venv holds but SAE does not need is left out, so a tool installed by hand never lands in the
lock. ``make install`` (hence CI) installs with ``-c constraints.txt`` and builds with
``--build-constraint constraints.txt``: the same versions on every machine, until the next
``make lock``. Markers are evaluated for this interpreter and platform (CPython 3.11 on Linux, as
CI and the Dockerfile run).

    .venv/bin/python tools/lock.py
"""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
LOCK = REPO / "constraints.txt"
HEADER = """\
# Exact versions SAE and its tests are installed with (make install, CI): regenerate with
# `make lock` after changing a dependency in pyproject.toml (tools/lock.py). Used as pip
# constraints (-c) and build constraints (--build-constraint); not a list of what to install.
"""


def _applies(marker: Marker | None, extras: set[str]) -> bool:
    if marker is None:
        return True
    return any(marker.evaluate({"extra": extra}) for extra in extras | {""})


def _walk(roots: list[Requirement]) -> dict[str, str]:
    """Every distribution the requirements reach (with their extras), and its installed version."""
    pinned: dict[str, str] = {}
    done: set[tuple[str, frozenset[str]]] = set()
    queue = [(r, set[str]()) for r in roots]
    missing: list[str] = []
    while queue:
        requirement, parent_extras = queue.pop()
        if not _applies(requirement.marker, parent_extras):
            continue
        name = canonicalize_name(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in done:
            continue
        done.add(key)
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            missing.append(str(requirement))
            continue
        if not requirement.specifier.contains(dist.version, prereleases=True):
            missing.append(f"{requirement} (installed: {dist.version})")
        pinned[name] = dist.version
        queue.extend((Requirement(r), set(requirement.extras)) for r in dist.requires or [])
    if missing:
        sys.exit("the venv does not satisfy: " + "; ".join(sorted(missing)) + " (make install)")
    return pinned


def lock_text() -> str:
    """The constraints file for the requirements of pyproject.toml, as this venv satisfies them."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    requires = list(project["project"]["dependencies"])
    requires += project["project"]["optional-dependencies"]["dev"]
    requires += project["build-system"]["requires"]
    requires.append("pip")
    pinned = _walk([Requirement(r) for r in requires])
    pinned.pop("sae", None)
    return HEADER + "".join(f"{name}=={version}\n" for name, version in sorted(pinned.items()))


def main() -> None:
    text = lock_text()
    LOCK.write_text(text, encoding="utf-8")
    print(f"{LOCK.name}: {text.count(chr(10)) - HEADER.count(chr(10))} pins")


if __name__ == "__main__":
    main()
