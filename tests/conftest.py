"""Shared fixtures: settings, databases (SQLite and PostgreSQL, built by the migrations), app.

``SAE_REQUIRE_ALL=1`` (set by .ci/run) turns every "tool missing" skip into a failure, so CI never
passes by skipping.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.orm import Session

from sae.config import Settings, load_settings
from sae.db import make_engine
from sae.migrate import upgrade

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
XSD_DIR = SHARED / "seda-xsd"
SAMPLES = SHARED / "seda-samples"
REQUIRE_ALL = os.environ.get("SAE_REQUIRE_ALL") == "1"
PG_URL = os.environ.get(
    "SAE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def require(condition: object, reason: str) -> None:
    """Skip the test when ``condition`` is false — or fail, under ``SAE_REQUIRE_ALL=1``."""
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"required by SAE_REQUIRE_ALL=1 but missing: {reason}")
    pytest.skip(reason)


class _TokenRecorder:
    """Stands for the ``secrets`` module inside ``sae.auth.service``: every token the suite's
    process creates is remembered (:func:`no_token_in_the_suites_logs`)."""

    def __init__(self) -> None:
        self.tokens: list[str] = []

    def token_urlsafe(self, nbytes: int | None = None) -> str:
        value = secrets.token_urlsafe(nbytes)
        self.tokens.append(value)
        return value

    def __getattr__(self, name: str) -> Any:
        return getattr(secrets, name)


class _SuiteLog(logging.Handler):
    """Keeps the text of every record the suite's process logs (message and traceback, before
    any scrubbing: SAE must not write a token into a message in the first place)."""

    #: The tests' own HTTP client logs the URLs it calls, and a few tests log tokens on purpose.
    IGNORED = ("httpx", "httpcore", "tests")

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(self.IGNORED):
            return
        try:
            text = record.getMessage()
        except Exception:
            text = str(record.msg)
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append(text)


@pytest.fixture(scope="session", autouse=True)
def no_token_in_the_suites_logs() -> Iterator[None]:
    """At the end of the run, no line logged in this process holds a token it created
    (``tests/test_logs.py`` does the same at DEBUG on a real server's output)."""
    import sae.auth.service as auth

    recorder = _TokenRecorder()
    original = auth.secrets
    auth.secrets = recorder  # type: ignore[assignment]
    handler = _SuiteLog()
    logging.getLogger().addHandler(handler)
    try:
        yield
    finally:
        logging.getLogger().removeHandler(handler)
        auth.secrets = original
    leaked = [line for line in handler.lines for token in recorder.tokens if token in line]
    if leaked:
        pytest.fail(f"{len(leaked)} logged line(s) hold an API token, e.g. {leaked[0][:200]!r}")


def _postgres_reachable() -> bool:
    try:
        engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    require(SHARED.is_dir(), f"{SHARED} (shared test data) not found")
    return SHARED


@pytest.fixture(scope="session")
def xsd_dir(shared_dir: Path) -> Path:
    require((XSD_DIR / "2.2" / "seda-2.2-main.xsd").is_file(), "official SEDA XSDs not found")
    return XSD_DIR


@pytest.fixture(scope="session")
def samples_dir(shared_dir: Path) -> Path:
    require(SAMPLES.is_dir(), "SEDA samples not found")
    return SAMPLES


class Database:
    """A migrated database for the test run; ``reset()`` empties every table."""

    def __init__(self, kind: str, url: str, engine: Engine, cleanup: Any) -> None:
        self.kind = kind
        self.url = url
        self.engine = engine
        self._cleanup = cleanup

    def reset(self) -> None:
        tables = [t for t in reversed(_sorted_tables()) if t != "alembic_version"]
        # DELETE, children first: on a few rows it is much faster than TRUNCATE on PostgreSQL.
        with self.engine.begin() as conn:
            existing = set(inspect(conn).get_table_names())
            for table in tables:
                if table in existing:
                    conn.execute(text(f'DELETE FROM "{table}"'))

    def close(self) -> None:
        self.engine.dispose()
        self._cleanup()


def _sorted_tables() -> list[str]:
    from sae.models import Base

    return [t.name for t in Base.metadata.sorted_tables]


def _open_database(kind: str, tmp: Path) -> Database:
    if kind == "sqlite":
        url = f"sqlite:///{tmp / 'sae-test.db'}"
        engine = make_engine(url)
        upgrade(engine)
        return Database(kind, url, engine, lambda: None)
    require(_postgres_reachable(), f"PostgreSQL not reachable at {PG_URL}")
    # One schema per test process, so that parallel runs on the same database never collide.
    schema = f"sae_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = PG_URL + ("&" if "?" in PG_URL else "?") + f"options=-csearch_path%3D{schema}"
    engine = make_engine(url)
    upgrade(engine)

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return Database(kind, url, engine, drop)


@contextmanager
def postgres_schema(prefix: str) -> Iterator[str]:
    """An empty PostgreSQL schema of its own for the block (dropped after): its URL.

    For tests that need a second catalogue beside the ``database`` fixture's (a rebuild's
    target, a backup's source)."""
    require(_postgres_reachable(), f"PostgreSQL not reachable at {PG_URL}")
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield PG_URL + ("&" if "?" in PG_URL else "?") + f"options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    """A migrated database, once per run and kind (SQLite and PostgreSQL)."""
    db = _open_database(request.param, tmp_path_factory.mktemp(f"db-{request.param}"))
    yield db
    db.close()


@pytest.fixture
def db_session(database: Database) -> Iterator[Session]:
    """A session in a transaction that is rolled back at the end of the test."""
    connection = database.engine.connect()
    trans = connection.begin()
    session = Session(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    try:
        yield session
    finally:
        session.close()
        trans.rollback()
        connection.close()


@pytest.fixture
def settings(tmp_path: Path, database: Database) -> Iterator[Settings]:
    """Settings for an app on the test database, with its own data directory."""
    xsd = XSD_DIR if (XSD_DIR / "2.2" / "seda-2.2-main.xsd").is_file() else None
    database.reset()
    yield load_settings(
        data_dir=tmp_path / "sae-data",
        database_url=database.url,
        seda_xsd_dir=xsd,
    )
    database.reset()


def upgrade_to(engine: Engine, revision: str) -> None:
    """Bring ``engine``'s database to ``revision``: a migration test's "before" and "after"."""
    from alembic import command

    from sae.migrate import alembic_config

    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def openssl() -> str:
    path = shutil.which("openssl")
    require(path, "openssl not installed")
    assert path is not None
    return path


class Api:
    """A running app (its own engine and sessions, as in production) and its admin token."""

    def __init__(self, client: Any, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.admin = (settings.data_dir / "admin.token").read_text().strip()

    @property
    def runtime(self) -> Any:
        return self.client.app.state.runtime

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin}"}

    def token(self, role: str, producers: list[str] | None = None) -> str:
        from sae.auth.service import create_token
        from sae.db import transaction

        with transaction(self.runtime.sessions) as session:
            _, secret = create_token(session, role=role, producers=producers or [])
        return secret

    def load_rules(self, csv_text: str) -> None:
        response = self.client.put(
            "/api/v1/rules",
            content=csv_text.encode(),
            headers={**self.auth(), "Content-Type": "text/csv"},
        )
        assert response.status_code == 200, response.text

    def deposit(self, data: bytes, token: str | None = None, *, xml: bool = False) -> Any:
        headers = {**self.auth(token), "Content-Type": "application/zip"}
        if xml:
            headers["Accept"] = "application/xml"
        return self.client.post("/api/v1/transfers", content=data, headers=headers)


TEST_RULES_CSV = """RuleId,RuleType,RuleValue,RuleDescription,RuleDuration,RuleMeasurement
APP-5Y,AppraisalRule,Dossiers 5 ans,"Durée d'utilité administrative de 5 ans",5,YEAR
APP-10Y,AppraisalRule,Dossiers 10 ans,,10,YEAR
ACC-00001,AccessRule,Libre communicabilité,,0,YEAR
ACC-25Y,AccessRule,Secret des délibérations 25 ans,,25,YEAR
ACC-50Y,AccessRule,Vie privée 50 ans,,50,YEAR
HOL-1,HoldRule,Gel contentieux,,,
"""


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    """A TestClient on a fresh app, with the test referential loaded."""
    from fastapi.testclient import TestClient

    from sae.app import create_app

    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        api = Api(client, settings)
        api.load_rules(TEST_RULES_CSV)
        yield api


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked ``slow`` first, each module's in their order.

    ``make test`` runs two processes (pytest-xdist), which take the collection from its start:
    a test of two minutes (a crash loop, the drill's archive) that came last kept one process
    busy for minutes after the other had finished everything else (a quarter of the machine
    idle at the end of a CI run). Started first, it runs while the other process goes through
    the rest. A stable sort: modules stay together, so their fixtures are built once."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
