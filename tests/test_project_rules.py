"""Small project lint rules, as tests (STYLE.md rule 14)."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import REPO

SAE = REPO / "sae"
XML_PARSING = re.compile(
    r"etree\.(fromstring|parse|XML|iterparse|XMLParser)\(|xml\.etree|xml\.dom|xml\.sax|minidom"
)
# The HTTP layer: routes, their dependencies, the app and the console's pages.
# Routes and what only routes use (http_security: the app's headers and CORS middleware).
WEB_LAYER = {"api.py", "deps.py", "downloads.py", "http_security.py"}
# The application built from its front-ends (sae.app) and the server process running it.
COMPOSITION_ROOT = {Path("app.py"), Path("process.py")}


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
        if path.name in WEB_LAYER or rel.parts[0] == "console" or rel in COMPOSITION_ROOT:
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


# --- The transaction rule (STYLE rule 6; docs/conventions.md, "Transactions") ---------------
#
# Services flush, never commit. A function that commits (``.commit()``, ``with transaction(…)``,
# ``with engine.begin()``) has one of three shapes:
#
# * ROUTE — an HTTP route (API or console) commits its request's session;
# * COMMAND — a ``sae`` command (Typer) commits its own transactions;
# * UNIT_OF_WORK — a unit of work that owns its transactions because a single one cannot do:
#   a background job (audit, sealing, disposal execution), or a step that must be durable
#   whatever its caller does next (a deposit committed before its 2xx, a read journaled before
#   its first byte, an integrity failure recorded while the read fails).
#
# Routes and commands are recognised by their decorator (``@router.post(…)``,
# ``@app.command(…)``, or ``app.command("audit")(audit_command)``). Every other committer is
# named below with its shape and why; a new one is either added here, with its reason, or made
# to flush and let its caller commit.

ROUTE, COMMAND, UNIT_OF_WORK = "route", "command", "unit of work"

TRANSACTION_OWNERS: dict[str, tuple[str, str]] = {
    # Route bodies run in a worker thread (the route itself is async).
    "sae.console.disposal._record_visa": (ROUTE, "the visa form's body, in a worker thread"),
    "sae.retention.api.post_outgoing_reply.work": (ROUTE, "the reply route's body, in a thread"),
    # A command's body shared by several commands.
    "sae.retention.cli._decide": (COMMAND, "sae retention submit / approve / reject"),
    # Deposits: 2xx only after the commit; concurrent transfers share one commit.
    "sae.ingest.deposit._ingest_and_commit": (UNIT_OF_WORK, "a deposit, committed before 2xx"),
    "sae.ingest.deposit.GroupCommit._write": (UNIT_OF_WORK, "the group commit of deposits"),
    # Reads: journaled before a byte leaves; a bad copy is recorded even if the read fails.
    "sae.access.reading.open_for_reading": (UNIT_OF_WORK, "the read is journaled first"),
    "sae.access.service.record_integrity_failure": (UNIT_OF_WORK, "outlives the failed read"),
    "sae.access.service.flag_object": (UNIT_OF_WORK, "outlives the failed read"),
    "sae.access.dip.build_dip": (UNIT_OF_WORK, "DIP export: journaled once the file is built"),
    # Withdrawal and disposal execution: copies are deleted between transactions, resumable.
    "sae.ingest.withdrawal.withdraw_transfer": (UNIT_OF_WORK, "withdrawal, resumable"),
    "sae.ingest.withdrawal._check": (UNIT_OF_WORK, "withdrawal: claim before deleting"),
    "sae.ingest.withdrawal._finish": (UNIT_OF_WORK, "withdrawal: record after deleting"),
    "sae.retention.execution.execute_list": (UNIT_OF_WORK, "disposal execution, resumable"),
    "sae.retention.execution._claim": (UNIT_OF_WORK, "disposal execution: claim the list"),
    "sae.retention.execution._release": (UNIT_OF_WORK, "disposal execution: release it"),
    "sae.retention.execution._journal_refusal": (UNIT_OF_WORK, "the refusal outlives it"),
    "sae.retention.execution._finish": (UNIT_OF_WORK, "disposal execution: the certificate"),
    # Pastell: its 200 only once the upload is on disk and recorded; the worker's claims.
    "sae.pastell.service.receive": (UNIT_OF_WORK, "a Pastell upload, recorded before its 200"),
    "sae.pastell.service.receive_chunk": (UNIT_OF_WORK, "a chunk, recorded before its 200"),
    "sae.pastell.service.claim": (UNIT_OF_WORK, "Pastell worker: claim a message"),
    "sae.pastell.service._release": (UNIT_OF_WORK, "Pastell worker: leave it for a retry"),
    "sae.pastell.service._finish": (UNIT_OF_WORK, "Pastell worker: the ATR, once ingested"),
    "sae.pastell.service._restore_bordereau": (
        UNIT_OF_WORK,
        "Pastell worker: a rebuilt message's bordereau, read back from beside its upload",
    ),
    "sae.pastell.service._set_status": (
        UNIT_OF_WORK,
        "Pastell worker: a rebuilt message archived before the loss, its bordereau lost",
    ),
    "sae.pastell.service.expire_chunk_sessions": (UNIT_OF_WORK, "expired chunk sessions"),
    "sae.pastell.worker._after_failure": (UNIT_OF_WORK, "Pastell worker: retry after a bug"),
    # Authentication: a token's last use, written after the check, skipped when the database
    # is busy (a request is never held up or refused for it).
    "sae.auth.service.authenticate_and_record": (UNIT_OF_WORK, "a token's last use, best effort"),
    # Sign-in: a refused one is counted (committed) although the sign-in fails.
    "sae.auth.signin.sign_in_with_password": (UNIT_OF_WORK, "the refusal outlives the sign-in"),
    "sae.auth.signin.change_own_password": (UNIT_OF_WORK, "a wrong current password is counted"),
    "sae.pastell.service.sign_in": (UNIT_OF_WORK, "a refused Basic auth is counted"),
    "sae.console.security.open_console_session": (ROUTE, "the sign-in routes' session token"),
    "sae.console.security.close_console_session": (ROUTE, "sign-out revokes the session"),
    # Background jobs.
    "sae.background.Auditor.schedule_if_due": (UNIT_OF_WORK, "the periodic audit's row"),
    "sae.storage.audit.run_audit": (UNIT_OF_WORK, "audit: claim, batches, report"),
    "sae.storage.fill._fill_one": (UNIT_OF_WORK, "fsck fill: each copy recorded once written"),
    "sae.storage.quarantine.end_quarantines": (UNIT_OF_WORK, "quarantine end, per copy"),
    "sae.storage.quarantine._claim": (UNIT_OF_WORK, "quarantine end: claim a copy"),
    "sae.storage.quarantine.end_metadata_quarantines": (
        UNIT_OF_WORK,
        "quarantine end of metadata copies (journal segments)",
    ),
    "sae.journal.publishing.record_copy": (
        UNIT_OF_WORK,
        "a journal segment or witnessed checkpoint recorded once on its offer, no offer write held",
    ),
    "sae.journal.publishing._row_lock": (
        UNIT_OF_WORK,
        "journal segment publication: one publisher a round (PostgreSQL row lock)",
    ),
    "sae.journal.sealing.seal_now": (UNIT_OF_WORK, "a tree head, one instance at a time"),
    "sae.leases.take": (UNIT_OF_WORK, "a lease is held once committed, whatever its work does"),
    "sae.leases.release": (UNIT_OF_WORK, "a lease let go at once, for the next holder"),
    "sae.journal.witnessing.WitnessClient._store": (
        UNIT_OF_WORK,
        "a witness's cosignature, kept once verified, whatever the other witnesses answer",
    ),
    "sae.journal.witnessing.WitnessClient._refused": (
        UNIT_OF_WORK,
        "a witness's refusal is journaled as evidence, in the background round",
    ),
    # Alerts: detected and sent by the background worker, never inside another's transaction.
    "sae.alerts.service.evaluate": (UNIT_OF_WORK, "alerts: a round of detection, one at a time"),
    "sae.alerts.service._claim": (UNIT_OF_WORK, "alerts: claim the pending ones before sending"),
    "sae.alerts.service.send_pending": (
        UNIT_OF_WORK,
        "alerts: which channels took a notification, recorded after each send",
    ),
    # Text of archived PDFs and OCR, in the background after the transfer's commit.
    "sae.extraction.service._record": (
        UNIT_OF_WORK,
        "search: a batch of PDFs' text and their units' search documents, once read",
    ),
    "sae.extraction.ocr.ocr_object": (
        UNIT_OF_WORK,
        "OCR: the PDF/A's rows and event, once stored on every offer",
    ),
    "sae.extraction.ocr._failed": (UNIT_OF_WORK, "OCR: a failure recorded on its job"),
    "sae.extraction.ocr.ocr_pending": (
        UNIT_OF_WORK,
        "OCR: scans whose group already has a dissemination version marked skipped",
    ),
    # The rebuild of the catalogue from an offer: one transaction per segment, resumable.
    "sae.recovery.rebuild._Rebuild._claim_target": (UNIT_OF_WORK, "rebuild: the target's marker"),
    "sae.recovery.rebuild._Rebuild._import_segment": (UNIT_OF_WORK, "rebuild: one segment"),
    "sae.recovery.rebuild._Rebuild._import_tail": (UNIT_OF_WORK, "rebuild: one tail"),
    "sae.recovery.rebuild._Rebuild._recover_one": (UNIT_OF_WORK, "rebuild: a recovered transfer"),
    "sae.recovery.rebuild._Rebuild._finish": (UNIT_OF_WORK, "rebuild: summary, admin token"),
    "sae.recovery.rebuild._Rebuild._seal": (UNIT_OF_WORK, "rebuild: the head over it all"),
    "sae.recovery.rebuild._Rebuild.restore_cosignatures": (
        UNIT_OF_WORK,
        "rebuild: one witnessed checkpoint's cosignatures",
    ),
    "sae.recovery.drill.record_drill": (
        UNIT_OF_WORK,
        "restore drill: its report archived and its outcome journaled together",
    ),
    # Process start.
    "sae.runtime.Runtime.open": (UNIT_OF_WORK, "start: the first admin token"),
    "sae.journal.keys.check_keys_at_start": (
        UNIT_OF_WORK,
        "start: the key checked against the journal's pin, pinned once (locked) on a first start",
    ),
    "sae.config_journal.journal_configuration": (
        UNIT_OF_WORK,
        "start: the configuration's digests compared and a change journaled once (locked)",
    ),
    "sae.journal.rotation.rotate_key": (
        UNIT_OF_WORK,
        "key rotation: the leaf committed before the key files are swapped and a head sealed",
    ),
    "sae.migrations.env.run_migrations_online": (
        UNIT_OF_WORK,
        "the `alembic` command run by hand: the migrations in their own transaction",
    ),
    "sae.migrate._migration_lock": (
        UNIT_OF_WORK,
        "the schema migrations, all pending ones in one transaction under the migration lock",
    ),
    "sae.migrate._sqlite_lock": (
        UNIT_OF_WORK,
        "the schema migrations on SQLite: foreign keys off around their transaction (a setting)",
    ),
    "sae.migrate_db.move_catalog": (
        UNIT_OF_WORK,
        "sae migrate-db: the copy, its verification and its event, one target transaction",
    ),
}
#: The mechanism every shape commits through.
TRANSACTION_MECHANISM = "sae.db.transaction"

ROUTE_METHODS = {"get", "post", "put", "patch", "delete", "head", "options", "api_route"}


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def _functions(
    node: ast.AST, prefix: str
) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function and method under ``node``, with its qualified name."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{prefix}.{child.name}"
            yield name, child
            yield from _functions(child, name)
        elif isinstance(child, ast.ClassDef):
            yield from _functions(child, f"{prefix}.{child.name}")
        else:
            yield from _functions(child, prefix)


def _own_nodes(function: ast.FunctionDef | ast.AsyncFunctionDef) -> Iterator[ast.AST]:
    """The nodes of a function's body, not those of the functions defined inside it."""
    stack: list[ast.AST] = list(function.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _commits(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[int]:
    """Lines where the function commits: ``x.commit()`` (a savepoint's release aside),
    ``transaction(…)`` (sae.db), ``x.begin()`` (a connection's transaction)."""
    savepoints = {
        target.id
        for node in _own_nodes(function)
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Attribute)
        and node.value.func.attr == "begin_nested"
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    lines = []
    for node in _own_nodes(function):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        receiver = func.value if isinstance(func, ast.Attribute) else None
        if (
            (
                (name == "commit" and not node.args)
                and not (isinstance(receiver, ast.Name) and receiver.id in savepoints)
            )
            or name == "transaction"
            or (name == "begin" and isinstance(receiver, ast.AST) and not node.args)
        ):
            lines.append(node.lineno)
    return sorted(lines)


def _decorator_attr(decorator: ast.expr) -> str:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return target.attr if isinstance(target, ast.Attribute) else ""


def _registered_commands(tree: ast.Module, module: str) -> set[str]:
    """Functions registered as Typer commands by a call: ``app.command("audit")(audit_command)``."""
    imported = {
        alias.asname or alias.name: f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }
    return {
        imported.get(arg.id, f"{module}.{arg.id}")
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Call)
        and _decorator_attr(node.func) == "command"
        for arg in node.args
        if isinstance(arg, ast.Name)
    }


def transaction_committers(
    sources: dict[str, str],
) -> dict[str, tuple[str | None, list[int]]]:
    """Each function of ``sources`` (module name -> code) that commits: its shape by decorator
    (``ROUTE``, ``COMMAND``) or None, and the lines where it commits."""
    trees = {module: ast.parse(code) for module, code in sources.items()}
    commands = set().union(*(_registered_commands(t, m) for m, t in trees.items()))
    found: dict[str, tuple[str | None, list[int]]] = {}
    for module, tree in trees.items():
        for name, function in _functions(tree, module):
            lines = _commits(function)
            if not lines:
                continue
            attrs = {_decorator_attr(d) for d in function.decorator_list}
            shape = (
                ROUTE
                if attrs & ROUTE_METHODS
                else COMMAND
                if "command" in attrs or name in commands
                else None
            )
            found[name] = (shape, lines)
    return found


def _sae_sources() -> dict[str, str]:
    return {_module_name(p): p.read_text(encoding="utf-8") for p in _python_files(SAE)}


def test_only_routes_commands_and_named_units_of_work_commit() -> None:
    """The caller owns the transaction: services flush, never commit (STYLE rule 6)."""
    offenders = [
        f"{name} (line {', '.join(map(str, lines))})"
        for name, (shape, lines) in transaction_committers(_sae_sources()).items()
        if shape is None and name not in TRANSACTION_OWNERS and name != TRANSACTION_MECHANISM
    ]
    assert offenders == [], (
        "these functions commit but are neither a route nor a command: flush and let the "
        f"caller commit, or name them in TRANSACTION_OWNERS with their reason: {offenders}"
    )


def test_every_named_transaction_owner_still_commits() -> None:
    """The list above stays true: a name that no longer commits (or no longer exists) goes."""
    committers = transaction_committers(_sae_sources())
    stale = sorted(name for name in TRANSACTION_OWNERS if name not in committers)
    assert stale == [], f"no longer commit, remove from TRANSACTION_OWNERS: {stale}"
    assert {shape for shape, _ in TRANSACTION_OWNERS.values()} <= {ROUTE, COMMAND, UNIT_OF_WORK}


def test_the_transaction_rule_catches_a_service_that_commits() -> None:
    sources = {
        "sae.x.service": (
            "def save(session):\n    session.add(1)\n    session.commit()\n"
            "def later(sessions):\n    with transaction(sessions) as s:\n        pass\n"
            "def nested(session):\n    sp = session.begin_nested()\n    sp.commit()\n"
        ),
        "sae.x.api": "@router.post('/x')\ndef route(session):\n    session.commit()\n",
        "sae.x.cli": ("@app.command('y')\ndef y(s):\n    s.commit()\ndef z(s):\n    s.commit()\n"),
        "sae.cli": "from sae.x.cli import z\napp.command('z')(z)\n",
    }
    assert transaction_committers(sources) == {
        "sae.x.service.save": (None, [3]),
        "sae.x.service.later": (None, [5]),
        "sae.x.api.route": (ROUTE, [3]),
        "sae.x.cli.y": (COMMAND, [3]),
        "sae.x.cli.z": (COMMAND, [5]),
    }


# --- Front-ends (docs/conventions.md, "Front-ends") ---------------------------------------------
#
# The API (sae/<domain>/api.py and its dependencies sae/auth/deps.py), the console (sae/console/)
# and the command line (sae/cli.py, sae/cli_support.py, sae/<domain>/cli.py) each translate to
# the same domain functions; none imports another. sae/deps.py and sae/downloads.py are the HTTP
# plumbing both web front-ends share (a request's session, download headers); sae/app.py and
# sae/process.py compose and run the web front-ends, and are none of them.


def front_end(module: str) -> str | None:
    """The front-end a module belongs to: "api", "console", "cli", or None."""
    parts = module.split(".")
    if parts[0] != "sae" or len(parts) < 2:
        return None
    if parts[1] == "console":
        return "console"
    if module in ("sae.cli", "sae.cli_support", "sae.__main__") or parts[2:] == ["cli"]:
        return "cli"
    if parts[2:] == ["api"] or module == "sae.auth.deps":
        return "api"
    return None


def _is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _imported_modules(tree: ast.Module, known: set[str]) -> Iterator[str]:
    """Every module an import names (``from sae.journal import api`` names ``sae.journal.api``
    when that is a module of ``known``, or of the repository)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                if name in known or _is_module(name):
                    yield name


def front_end_crossings(sources: dict[str, str]) -> list[str]:
    """``importer -> imported`` for each import of one front-end by another."""
    crossings = set()
    for module, code in sources.items():
        kind = front_end(module)
        if kind is None:
            continue
        for imported in _imported_modules(ast.parse(code), set(sources)):
            if front_end(imported) not in (None, kind):
                crossings.add(f"{module} -> {imported}")
    return sorted(crossings)


def test_a_front_end_never_imports_another() -> None:
    """API, console and CLI only translate, each to the domain functions (issue 16, item 3)."""
    crossings = front_end_crossings(_sae_sources())
    assert crossings == [], f"move what they share into the domain: {crossings}"


def test_the_front_end_rule_sees_a_crossing() -> None:
    sources = {
        "sae.console.routes": "from sae.ingest.api import journal_ref\nfrom sae.deps import X\n",
        "sae.journal.cli": "from sae.journal import api\nfrom sae.journal import service\n",
        "sae.ingest.api": "from sae.cli_support import make_console\n",
        "sae.ingest.service": "from sae.ingest.api import router\n",
    }
    assert front_end_crossings(sources) == [
        "sae.console.routes -> sae.ingest.api",
        "sae.ingest.api -> sae.cli_support",
        "sae.journal.cli -> sae.journal.api",
    ]


def test_a_server_process_does_not_load_what_only_some_acts_need(tmp_path: Path) -> None:
    """fpdf (23 MiB resident, with fontTools and Pillow) and fido's own loader (requests,
    18 MiB) in every server process counted against the memory a 100 MiB Pastell transfer
    may take (issue 22: 300 MB): the PDFs import fpdf when they are written, and PRONOM's
    signatures are read without fido's runtime."""
    import os
    import subprocess
    import sys

    script = (
        "import sys\n"
        "import sae.app\n"
        "from sae.config import Settings\n"
        "from sae.runtime import Runtime\n"
        "from sae.ingest.identify import identifier\n"
        "settings = Settings()\n"
        "sae.app.create_app(settings, Runtime.open(settings, migrate=True))\n"
        "identifier()\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'fpdf', 'fontTools', 'PIL',"
        " 'requests', 'fido'}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={**os.environ, "SAE_DATA_DIR": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
