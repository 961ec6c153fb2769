"""catalog: the text extracted from objects (a PDF's text layer), fed to full-text search

Revision ID: 0021_object_text
Revises: 0020_scan_chain
Create Date: 2026-12-06

``object_texts``: one row per data object whose bytes were read for text
(``sae.catalog.objecttext``), the text folded as the index sees it. The row is derived data:
the background worker writes it after the transfer is accepted, and ``sae rebuild`` extracts
it again from the offer. The units of the object's group carry that text at the end of their
``search_text``, which the triggers of ``0015_fulltext`` index as before.

A trigger deletes the row when its object is destroyed or withdrawn, whichever code path
changes the status (disposal, outgoing transfer, withdrawal, their replays, raw SQL): the text
of a record no longer archived does not outlive it. The table starts empty: the worker reads
the PDFs already archived on its first round.

``ocr_jobs``: the server's OCR (``SAE_OCR``) of each archived scan — done (and the PDF/A object
it added), failed (how often, why, when to try again) or skipped.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import sae.db

revision: str = "0021_object_text"
down_revision: str | Sequence[str] | None = "0020_scan_chain"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE = [
    """CREATE TRIGGER data_objects_text_gone
    AFTER UPDATE OF status ON data_objects
    WHEN new.status IN ('destroyed', 'withdrawn')
    BEGIN
        DELETE FROM object_texts WHERE object_id = new.id;
    END""",
]
SQLITE_DROP = ["DROP TRIGGER IF EXISTS data_objects_text_gone"]
POSTGRESQL = [
    """CREATE FUNCTION data_objects_text_gone() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.status IN ('destroyed', 'withdrawn') THEN
            DELETE FROM object_texts WHERE object_id = NEW.id;
        END IF;
        RETURN NEW;
    END
    $$""",
    """CREATE TRIGGER data_objects_text_gone
    AFTER UPDATE OF status ON data_objects
    FOR EACH ROW EXECUTE FUNCTION data_objects_text_gone()""",
]
POSTGRESQL_DROP = [
    "DROP TRIGGER IF EXISTS data_objects_text_gone ON data_objects",
    "DROP FUNCTION IF EXISTS data_objects_text_gone()",
]


def upgrade() -> None:
    op.create_table(
        "object_texts",
        sa.Column("object_id", sa.String(length=36), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("extracted_at", sae.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["object_id"],
            ["data_objects.id"],
            name=op.f("fk_object_texts_object_id_data_objects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("object_id", name=op.f("pk_object_texts")),
    )
    op.create_table(
        "ocr_jobs",
        sa.Column("object_id", sa.String(length=36), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("derived_id", sa.String(length=36), nullable=True),
        sa.Column("next_try_at", sae.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sae.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["object_id"],
            ["data_objects.id"],
            name=op.f("fk_ocr_jobs_object_id_data_objects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("object_id", name=op.f("pk_ocr_jobs")),
    )
    op.create_index(op.f("ix_ocr_jobs_state"), "ocr_jobs", ["state"], unique=False)
    dialect = op.get_bind().dialect.name
    for statement in POSTGRESQL if dialect == "postgresql" else SQLITE:
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in POSTGRESQL_DROP if dialect == "postgresql" else SQLITE_DROP:
        op.execute(statement)
    op.drop_index(op.f("ix_ocr_jobs_state"), table_name="ocr_jobs")
    op.drop_table("ocr_jobs")
    op.drop_table("object_texts")
