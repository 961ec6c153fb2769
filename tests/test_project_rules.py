"""Small project lint rules, as tests (STYLE.md rule 14)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import REPO

SAE = REPO / "sae"
XML_PARSING = re.compile(
    r"etree\.(fromstring|parse|XML|iterparse|XMLParser)\(|xml\.etree|xml\.dom|xml\.sax|minidom"
)
# The HTTP layer: routes, their dependencies, the app and the console's pages.
WEB_LAYER = {"api.py", "deps.py", "downloads.py"}  # routes and what only routes use


def _python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def test_no_xml_parsing_outside_the_hardened_parser() -> None:
    """Every XML SAE reads goes through seda.safe_parse (no DTD, no entities, no network)."""
    offenders = [
        f"{path.relative_to(REPO)}:{number}"
        for path in _python_files(SAE)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if XML_PARSING.search(line)
    ]
    assert offenders == [], f"parse XML with seda.safe_parse instead: {offenders}"


def test_domain_services_do_not_import_fastapi() -> None:
    """Dependencies point one way: api/console/cli -> services; no FastAPI below the routes."""
    offenders = []
    for path in _python_files(SAE):
        rel = path.relative_to(SAE)
        if path.name in WEB_LAYER or rel.parts[0] == "console" or rel == Path("app.py"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "fastapi" or n.startswith(("fastapi.", "starlette")) for n in names):
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == [], f"FastAPI imported by domain code: {sorted(set(offenders))}"


def test_services_never_commit() -> None:
    """The caller owns the transaction: services flush, never commit (STYLE rule 6).

    Allowed to commit: the web layer, the CLI, background jobs and the units of work that own
    their transactions by design (named here, each with the reason in its module docstring).
    """
    owners = {
        "cli.py",
        "background.py",
        "runtime.py",
        "db.py",
        "deposit.py",
        "dip.py",
        "execution.py",
        "audit.py",
        "sealing.py",
        "records.py",
        "outgoing.py",
        "runner.py",
        "reading.py",
    }
    offenders = []
    for path in _python_files(SAE):
        rel = path.relative_to(SAE)
        if path.name in WEB_LAYER | owners or rel.parts[0] == "console":
            continue
        text = path.read_text(encoding="utf-8")
        if re.search(r"\bsession\.commit\(\)", text):
            offenders.append(str(rel))
    assert offenders == [], f"services that commit: {offenders}"
