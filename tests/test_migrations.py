"""The schema is built by the migrations, and the models never drift from them."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from sae.catalog.fulltext import outside_metadata
from sae.models import Base
from tests.conftest import Database


def test_models_match_migrations(database: Database) -> None:
    """The equivalent of ``alembic check``, on SQLite and PostgreSQL."""
    with database.engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": outside_metadata}
        )
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"


def test_one_head() -> None:
    """Operators run `alembic upgrade head`: the history must not fork."""
    from alembic.script import ScriptDirectory

    from sae.migrate import alembic_config

    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, heads
