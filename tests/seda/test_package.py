"""The public surface of seda: explicit, documented, stand-alone, one XML entry point."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import seda

SEDA_DIR = Path(seda.__file__).parent


def test_every_public_name_exists_and_has_a_docstring() -> None:
    for name in seda.__all__:
        value = getattr(seda, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"seda.{name} has no docstring"


def test_exception_tree_is_drawn_in_the_module_docstring() -> None:
    doc = seda.__doc__ or ""
    for name in seda.__all__:
        value = getattr(seda, name)
        if inspect.isclass(value) and issubclass(value, seda.SedaError):
            assert name in doc, f"{name} missing from the exception tree"
            assert value.default_code in doc or value is seda.SedaError
            assert issubclass(value, seda.SedaError)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_seda_imports_nothing_from_sae() -> None:
    for path in SEDA_DIR.glob("*.py"):
        assert not {m for m in _imports(path) if m == "sae" or m.startswith("sae.")}, path


def test_only_the_hardened_parser_parses_messages() -> None:
    parsing = ("fromstring", "iterparse", "XMLParser", "XML(", "parse(")
    for path in SEDA_DIR.glob("*.py"):
        if path.name in ("_parser.py", "_xsd.py"):  # _xsd.py only loads the local schema files
            continue
        source = path.read_text(encoding="utf-8")
        for call in parsing:
            assert f"etree.{call}" not in source, f"{path.name} calls etree.{call}"
