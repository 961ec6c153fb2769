"""Full-text search at scale (issue #19): p95 of one- to three-word queries, with and without
facets, on a realistic French catalogue; the index's build time and size.

    .venv/bin/python bench/bench_search.py --database sqlite [--units 200000]
    .venv/bin/python bench/bench_search.py --database postgresql [--units 1000000]
        [--queries 300] [--baseline-queries 20] [--seed 7] [--schema NAME]

``--schema NAME`` (PostgreSQL) loads the catalogue into the schema NAME of the ``sae_bench``
database and keeps it; a later run with the same name, units and seed measures it again
without the load (a million units take a quarter of an hour to write). ``--baseline-queries
0`` leaves the baselines out.

The catalogue is generated, not deposited (a million deposits would take hours and measure the
ingest): titles and descriptions built from the record types of the shipped schedule
(retention_rules/communal-schedule.yaml), French surnames, first names, streets, places and
dates; each unit declares its record type's AppraisalRule (the ``record_type`` facet), four
producers, dates over thirty years. Rows are written by SAE's own migrations' schema, so the
database's triggers index them as they would an ingest's; on PostgreSQL the GIN index is
dropped during the load and built afterwards (timed: the index build), as the migration does.

Queries are drawn from the corpus's own words (so each finds something), typed as a user
would: lower case, without accents, a prefix sometimes, two or three words in any order. Each
is answered by SAE's search function (``sae.catalog.service.search``: a first page of 50,
ranked, and for the "facets" figure the total and the four facets in the same call, as the API
and the console ask; before session 13, ``search_units`` then ``search_facets``).
Baselines, same run, on the first ``--baseline-queries`` queries: the search as session 11
left it (every match ranked and counted: ``RANKED_AT_MOST`` lifted), and the search before the
index (a substring ``LIKE`` over the folded text). ``--caps 10000,2000`` measures the search
ranking at most each of those many matches; the queries are reported in two groups, common
words (more matches than the first cap) and the others.

Target (issue #19): p95 <= 100 ms at 1,000,000 units on PostgreSQL and 200,000 on SQLite.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, create_engine, func, insert, select, text
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import postgres_schema, result  # noqa: E402
from sae.auth.service import Principal  # noqa: E402
from sae.catalog import service  # noqa: E402
from sae.catalog.models import ArchiveUnit, UnitRule  # noqa: E402
from sae.catalog.text import fold, search_text  # noqa: E402
from sae.db import make_engine  # noqa: E402
from sae.ingest.models import Transfer  # noqa: E402
from sae.migrate import upgrade  # noqa: E402
from sae.retention.models import Rule  # noqa: E402
from sae.retention.referential import shipped_specs  # noqa: E402

BATCH = 5000
SURNAMES = (
    "Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau Simon Laurent "
    "Lefèvre Michel Garcia David Bertrand Roux Vincent Fournier Morel Girard André Lefebvre "
    "Mercier Dupont Lambert Bonnet François Martinez Legrand Garnier Faure Rousseau Blanc "
    "Guérin Muller Henry Roussel Nicolas Perrin Morin Mathieu Clément Gauthier Dumont Lopez "
    "Fontaine Chevalier Robin Masson Sanchez Gérard Nguyen Boyer Denis Lemaire Duval Joly "
    "Gautier Roger Roche Roy Noël Meyer Lucas Meunier Jean Pérez Marchand Dufour Blanchard "
    "Marie Barbier Brun Dumas Brunet Schmitt Leroux Colin Fernandez Pierre Renard Arnaud "
    "Rolland Caron Aubert Giraud Leclerc Vidal Bourgeois Renaud Lemoine Picard Gaillard Philippe"
).split()
FIRST_NAMES = (
    "Jean Marie Pierre Michel André Philippe Nathalie Isabelle Sylvie Catherine Françoise "
    "Jacques Christophe Stéphane Frédéric Hélène Élodie Céline Aurélie Sébastien Jérôme Maël "
    "Léa Chloé Inès Zoé Noé Gaëlle Anaïs Loïc Hervé Thérèse Renée Josiane Geneviève"
).split()
STREETS = (
    "rue Victor-Hugo",
    "avenue Jean-Jaurès",
    "place de la République",
    "rue de la Paix",
    "boulevard Gambetta",
    "rue des Écoles",
    "chemin des Vignes",
    "allée des Tilleuls",
    "rue Pasteur",
    "impasse du Moulin",
    "quai de la Marne",
    "rue de l'Église",
    "avenue du Général-de-Gaulle",
    "rue Émile-Zola",
    "square Léon-Blum",
)
PLACES = (
    "école Jules-Ferry",
    "gymnase municipal",
    "salle des fêtes",
    "médiathèque",
    "cimetière communal",
    "stade Léo-Lagrange",
    "crèche des Lutins",
    "hôtel de ville",
    "centre social",
    "parc de l'Abbaye",
)
SUBJECTS = (
    "éclairage public",
    "voirie",
    "assainissement",
    "restauration scolaire",
    "aide sociale",
    "urbanisme",
    "subvention aux associations",
    "travaux de rénovation",
    "marché de fournitures",
    "personnel communal",
    "état civil",
    "élections municipales",
    "budget primitif",
    "compte administratif",
    "transport scolaire",
    "espaces verts",
)
DESCRIPTIONS = (
    "Dossier constitué par le service {service} concernant {subject} ({place}).",
    "Pièces relatives à {subject} : correspondance, rapports et décisions, {street}.",
    "Demande présentée par {first} {surname}, instruction et réponse du maire.",
    "Contient les pièces justificatives, les factures et le procès-verbal de réception.",
    "Séance du conseil municipal du {day}, rapport de {first} {surname} sur {subject}.",
    "Instruction du dossier, avis des services, arrêté et notification à l'intéressé.",
)
PRODUCERS = ("DG", "FINANCES", "URBANISME", "CCAS")
SERVICES = {"DG": "direction générale", "FINANCES": "finances", "URBANISME": "urbanisme"}
ADMIN = Principal(token_id="bench", role="admin")


def record_types(engine: Engine) -> list[tuple[str, str]]:
    """The schedule's appraisal rules, written into the catalogue: (id, record type)."""
    specs = [s for s in shipped_specs() if s.type == "AppraisalRule"]
    with Session(engine) as session, session.begin():
        session.execute(insert(Rule), [s.as_dict() for s in shipped_specs()])
    return [(s.id, str((s.meta or {}).get("record_type") or s.value)) for s in specs]


def corpus(
    n: int, types: list[tuple[str, str]], rng: random.Random
) -> Iterator[tuple[dict[str, object], str]]:
    """``n`` units as rows of ``archive_units`` (with the rule each declares)."""
    epoch = date(1995, 1, 1)
    created = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(n):
        rule_id, kind = types[rng.randrange(len(types))]
        day = epoch + timedelta(days=rng.randrange(30 * 365))
        who = f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}"
        where = rng.choice(STREETS)
        subject = rng.choice(SUBJECTS)
        title = rng.choice(
            (
                f"{kind} — {subject} ({day.year})",
                f"{kind} : {who}, {where}",
                f"{kind} n° {day.year}-{i % 997:03d} — {rng.choice(PLACES)}",
                f"Dossier de {who} — {subject}",
            )
        )
        producer = PRODUCERS[i % len(PRODUCERS)]
        description = rng.choice(DESCRIPTIONS).format(
            service=SERVICES.get(producer, "action sociale"),
            subject=subject,
            place=rng.choice(PLACES),
            street=where,
            first=rng.choice(FIRST_NAMES),
            surname=rng.choice(SURNAMES),
            day=day.strftime("%d/%m/%Y"),
        )
        sip_id = f"AU-{i}"
        row = {
            "id": f"00000000-0000-4000-8000-{i:012d}",
            "transfer_id": "bench-transfer",
            "sip_id": sip_id,
            "title": title,
            "title_folded": fold(title),
            "description": description,
            "search_text": search_text(title, description, sip_id, [producer]),
            "start_date": day.isoformat(),
            "end_date": day.isoformat(),
            "producer": producer,
            "content_xml": b"",
            "management": {},
            "status": "active",
            "created_at": created + timedelta(seconds=i),
        }
        yield row, rule_id


def load(engine: Engine, n: int, seed: int) -> tuple[float, list[str]]:
    """Write ``n`` units; the seconds it took and the corpus's words (for the queries)."""
    rng = random.Random(seed)
    types = record_types(engine)
    with Session(engine) as session, session.begin():
        session.execute(
            insert(Transfer),
            [{"id": "bench-transfer", "status": "accepted", "producer": "DG"}],
        )
    words: set[str] = set()
    started = time.perf_counter()
    units: list[dict[str, object]] = []
    rules: list[dict[str, object]] = []
    for row, rule_id in corpus(n, types, rng):
        units.append(row)
        rules.append({"unit_id": row["id"], "category": "AppraisalRule", "rule_id": rule_id})
        if len(units) == BATCH:
            _write(engine, units, rules, words)
            units, rules = [], []
            print(f"  {row['sip_id']} written", end="\r", flush=True)
    if units:
        _write(engine, units, rules, words)
    return time.perf_counter() - started, sorted(w for w in words if len(w) >= 4)


def _write(
    engine: Engine,
    units: list[dict[str, object]],
    rules: list[dict[str, object]],
    words: set[str],
) -> None:
    with Session(engine) as session, session.begin():
        session.execute(insert(ArchiveUnit), units)
        session.execute(insert(UnitRule), rules)
    if len(words) < 5000:
        for row in units[:50]:
            words.update(str(row["search_text"]).replace("\n", " ").split())


def queries(words: list[str], count: int, rng: random.Random) -> list[str]:
    """One to three words each, typed as a user would (sometimes a prefix)."""
    alpha = [w for w in words if w.isalpha()]
    typed = []
    for _ in range(count):
        chosen = rng.sample(alpha, rng.choice((1, 1, 2, 2, 3)))
        if rng.random() < 0.3:
            chosen[-1] = chosen[-1][: max(4, len(chosen[-1]) - 3)]
        typed.append(" ".join(chosen))
    return typed


def _backend_cpu_ns(session: Session) -> int:
    """CPU time of this session's PostgreSQL backend (0 on SQLite: the work is in process)."""
    if session.get_bind().dialect.name != "postgresql":
        return 0
    pid = session.info.get("backend_pid")
    if pid is None:
        pid = session.info["backend_pid"] = session.scalar(text("SELECT pg_backend_pid()"))
    # schedstat's first field: nanoseconds on a CPU (stat's utime counts 10 ms ticks).
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def timed_queries(
    engine: Engine, typed: list[str], *, facets: bool
) -> tuple[list[float], list[float], list[bool]]:
    """Per query, wall and CPU milliseconds (the first page of 50, and the facets when asked;
    CPU: this process's and the PostgreSQL backend's, which another load on the machine does
    not inflate as it does the wall time), and whether its matches were more than the search
    ranks (a common word: ``total_exact`` false; known only with the facets)."""
    walls, cpus, capped = [], [], []
    with Session(engine) as session:
        session.connection()
        for q in typed:
            query = service.SearchQuery(q=q, limit=50)
            backend = _backend_cpu_ns(session)
            started, cpu = time.perf_counter(), time.process_time()
            exact = True
            if facets and hasattr(service, "search"):
                # As the API and the console ask: the page and the facets together.
                counted = service.search(session, query, ADMIN, facets=service.FACETS).facets
                exact = counted is not None and counted.exact
            else:  # the code before session 13 (two functions), or the page alone
                service.search_units(session, query, ADMIN)
                if facets:
                    exact = service.search_facets(session, query, ADMIN).exact
            walls.append((time.perf_counter() - started) * 1000)
            own = time.process_time() - cpu
            cpus.append(own * 1000 + (_backend_cpu_ns(session) - backend) / 1e6)
            capped.append(not exact)
    return walls, cpus, capped


@contextlib.contextmanager
def ranking_at_most(cap: int | None) -> Iterator[None]:
    """The search ranking and counting at most ``cap`` matches; None: every match ranked and
    counted, as session 11 left it (the baseline)."""
    kept = service.RANKED_AT_MOST
    service.RANKED_AT_MOST = 10**12 if cap is None else cap
    try:
        yield
    finally:
        service.RANKED_AT_MOST = kept


def split(values: list[float], capped: list[bool]) -> str:
    """p95 of the common-word queries (more matches than ranked) and of the others."""
    common = [v for v, c in zip(values, capped, strict=True) if c]
    rare = [v for v, c in zip(values, capped, strict=True) if not c]
    parts = []
    for name, chosen in (("common words", common), ("others", rare)):
        if chosen:
            parts.append(f"{name} ({len(chosen)}) p95 {p95(chosen):.1f}")
    return ", ".join(parts)


def like_baseline(engine: Engine, typed: list[str]) -> list[float]:
    """The search before the index: each word a substring of the folded text."""
    times = []
    with Session(engine) as session:
        for q in typed:
            stmt = select(ArchiveUnit.id)
            for word in fold(q).split():
                stmt = stmt.where(ArchiveUnit.search_text.like(f"%{word}%"))
            stmt = stmt.order_by(ArchiveUnit.created_at.desc()).limit(50)
            started = time.perf_counter()
            session.execute(stmt).all()
            times.append((time.perf_counter() - started) * 1000)
    return times


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 20 else max(values)


def index_size_mib(engine: Engine) -> float:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            # The narrow table (its vectors) and its GIN index.
            size = conn.scalar(text("SELECT pg_total_relation_size('unit_search')"))
            return int(size or 0) / 2**20
        # The FTS5 shadow tables and the rowid map (dbstat: Debian's SQLite has it).
        size = conn.scalar(
            text(
                "SELECT sum(pgsize) FROM dbstat"
                " WHERE name LIKE 'unit_fts%' OR name LIKE '%unit_search_rows%'"
            )
        )
        return int(size or 0) / 2**20


@contextlib.contextmanager
def database(kind: str, schema: str | None = None) -> Iterator[str]:
    if kind == "postgresql" and schema:
        yield kept_schema(schema)
    elif kind == "postgresql":
        with postgres_schema() as url:
            yield url
    else:
        with tempfile.TemporaryDirectory(prefix="sae-bench-search-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'search.db'}"


def kept_schema(schema: str) -> str:
    """The URL of the schema ``schema`` in the bench database, created if missing and kept."""
    if not schema.isidentifier():
        raise SystemExit(f"--schema {schema!r}: letters, digits and underscores only")
    with postgres_schema() as scratch:  # creates the bench database if needed
        base = scratch.split("?", 1)[0]
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    engine.dispose()
    return f"{base}?options=-csearch_path%3D{schema}"


def loaded(engine: Engine, units: int, seed: int) -> list[str] | None:
    """The corpus's words when the database already holds this corpus (``--schema``)."""
    with engine.connect() as conn:
        if not conn.dialect.has_table(conn, "bench_corpus"):
            return None
        row = conn.execute(text("SELECT units, seed, words FROM bench_corpus")).one_or_none()
    if row is None or (row.units, row.seed) != (units, seed):
        raise SystemExit(f"the schema holds another corpus ({row}): choose another --schema")
    return str(row.words).split()


def remember(engine: Engine, units: int, seed: int, words: list[str]) -> None:
    """Note what a kept schema holds, for :func:`loaded` (after the load completed)."""
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE bench_corpus (units integer, seed integer, words text)"))
        conn.execute(
            text("INSERT INTO bench_corpus VALUES (:units, :seed, :words)"),
            {"units": units, "seed": seed, "words": " ".join(words)},
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--units", type=int)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--baseline-queries", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--schema", help="PostgreSQL: load into this schema and keep it")
    parser.add_argument(
        "--caps", help="comma-separated values of RANKED_AT_MOST to measure, largest first"
    )
    args = parser.parse_args()
    units = args.units or (1_000_000 if args.database == "postgresql" else 200_000)
    rng = random.Random(args.seed + 1)
    with database(args.database, args.schema) as url:
        engine = make_engine(url)
        build = 0.0
        reused = loaded(engine, units, args.seed) if args.schema else None
        if reused is not None:
            seconds, words = 0.0, reused
        else:
            upgrade(engine)
            if args.database == "postgresql":
                with engine.begin() as conn:
                    conn.execute(text("DROP INDEX ix_unit_search_vector"))
                    conn.execute(text("DROP INDEX ix_unit_search_title"))
            seconds, words = load(engine, units, args.seed)
            if args.database == "postgresql":
                started = time.perf_counter()
                with engine.begin() as conn:
                    conn.execute(
                        text("CREATE INDEX ix_unit_search_vector ON unit_search USING gin (vector)")
                    )
                    conn.execute(
                        text("CREATE INDEX ix_unit_search_title ON unit_search USING gin (title)")
                    )
                    conn.execute(text("ANALYZE archive_units"))
                    conn.execute(text("ANALYZE unit_search"))
                    conn.execute(text("ANALYZE unit_rules"))
                build = time.perf_counter() - started
            else:
                with engine.begin() as conn:
                    conn.execute(text("ANALYZE"))
            if args.schema:
                remember(engine, units, args.seed, words)
        with Session(engine) as session:
            assert session.scalar(select(func.count()).select_from(ArchiveUnit)) == units
        typed = queries(words, args.queries, rng)
        timed_queries(engine, typed[:20], facets=False)  # warm the caches
        # The baseline (every match ranked and counted) in the same run, on the first
        # --baseline-queries queries, so that both see the machine's load of the moment.
        before = typed[: args.baseline_queries]
        caps = [int(c) for c in args.caps.split(",")] if args.caps else [service.RANKED_AT_MOST]
        rows: dict[str, tuple[list[float], list[float], list[bool]]] = {}
        for cap in [*caps, None] if before else caps:
            chosen = typed if cap is not None else before
            suffix = f" (ranked at most {cap:,})" if cap is not None else " (before: all ranked)"
            with ranking_at_most(cap):
                rows["plain" + suffix] = timed_queries(engine, chosen, facets=False)
                rows["facets" + suffix] = timed_queries(engine, chosen, facets=True)
        # Common words: more matches than the largest cap ranks.
        capped = rows[f"facets (ranked at most {caps[0]:,})"][2]
        baseline = like_baseline(engine, before) if before else []
        size = index_size_mib(engine)
        engine.dispose()
    for name, (walls, cpus, _) in rows.items():
        which = capped if len(walls) == len(capped) else capped[: len(walls)]
        result(
            f"search-{args.database} {name}: p95 wall {p95(walls):.1f} ms, CPU {p95(cpus):.1f}"
            f" ms, median wall {statistics.median(walls):.1f} ms ({len(walls)} queries of 1-3"
            f" words, first page of 50{', facets' if 'facets' in name else ''}); CPU by kind:"
            f" {split(cpus, which)}; wall by kind: {split(walls, which)}"
        )
    result(
        f"search-{args.database}: {units:,} units loaded in {seconds:.0f} s"
        + (f", GIN index built in {build:.0f} s" if build else "")
        + (f" (schema {args.schema} reused)" if not seconds else "")
        + f", index {size:,.0f} MiB | substring LIKE (before the index): "
        + (f"p95 {p95(baseline):.0f} ms over {len(baseline)} queries" if baseline else "not run")
        + f" | common words: more than"
        f" {caps[0]:,} matches | target p95 <= 100 ms; load average"
        f" {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
