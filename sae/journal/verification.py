"""``sae journal verify``: recompute the whole tree from the catalog and compare with everything.

Detects an event row modified (any column: the leaf is re-derived from the columns), deleted
(a gap in the leaf indices), inserted or reordered (the leaf embeds its index; the roots stop
matching the signed heads), a stored subtree hash altered, a head whose signature, checkpoint
or time-stamp imprint does not check, and a data object whose stored SHA-512 differs from what
the journal recorded. The report names the first bad leaf index.

The leaves are checked in aligned blocks of ``2**block_level`` (:mod:`sae.journal.blocks`):
everything inside a block is checked by whoever reads it; the blocks' roots are then folded in
leaf order here, where the nodes above the blocks and every head's root are compared. A large
journal's blocks go to a pool of worker processes, each reading its rows with its own
connection; a small one, or a session bound to a connection (whose transaction may hold rows
other connections cannot see), is checked in this process, in the session's transaction.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy import Engine, and_, func, select
from sqlalchemy.orm import Session

from sae.journal import merkle
from sae.journal.blocks import (
    MAX_PROBLEMS,
    BlockResult,
    Problem,
    blocks,
    check_block,
    init_worker,
    run_block,
)
from sae.journal.keyhistory import KeyEntry, history_of
from sae.journal.models import TREE_SIZE, Event, JournalNode, JournalState, TreeHead

__all__ = ["JournalReport", "Problem", "verify_journal"]

BLOCK_LEVEL = 16
"""Blocks of 65,536 leaves: a few seconds of work each, 16 for a million leaves."""
PARALLEL_FROM = 1 << 18
"""Below 262,144 leaves one process is done before worker processes would have started."""
MAX_WORKERS = 8
DIRECT = ("missing", "leaf", "leaf_hash", "size", "object", "key")


@dataclass
class JournalReport:
    """The outcome of :func:`verify_journal`."""

    tree_size: int = 0
    events: int = 0
    heads_checked: int = 0
    objects_checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    root_hash: bytes | None = None
    """The root of the leaves found in order (None when a gap cut them short)."""
    workers: int = 1
    """Processes that checked the leaves (1: the caller's)."""
    keys: list[KeyEntry] = field(default_factory=list)
    """The key history the heads were checked against, first key first."""

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.problems

    @property
    def first_bad_leaf(self) -> int | None:
        """The first leaf found bad.

        A bad leaf also spoils every stored node and signed root above it; those are only
        consulted when no leaf itself is found bad (e.g. a row rewritten consistently).
        """
        for kinds in (DIRECT, ("node",), ("root", "head")):
            indices = [
                p.leaf_index for p in self.problems if p.kind in kinds and p.leaf_index is not None
            ]
            if indices:
                return min(indices)
        return None

    def add(self, leaf_index: int | None, kind: str, message: str) -> None:
        """Record a problem (the first ``MAX_PROBLEMS`` are kept)."""
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(leaf_index, kind, message))


def default_workers() -> int:
    """One worker process per core (at most ``MAX_WORKERS``)."""
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


def verify_journal(
    session: Session,
    *,
    check_objects: bool = True,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
    block_level: int = BLOCK_LEVEL,
    parallel_from: int = PARALLEL_FROM,
    pinned_key: str | None = None,
) -> JournalReport:
    """Recompute the tree from every event row and check it against heads, nodes and objects.

    ``workers`` processes (default: one per core) check the blocks of a journal of at least
    ``parallel_from`` leaves; they read what is committed, so call this from a session that has
    written nothing. ``workers=1`` checks everything in this process.

    Every head is checked against the key history (:mod:`sae.journal.keyhistory`), whose first
    key is ``pinned_key`` (``SAE_JOURNAL_KEY_FINGERPRINT``) when given, else the journal's own
    pin; a rotation leaf whose signature by the previous key fails is a problem of kind
    ``key``.
    """
    size, bound = _extent(session)
    report = JournalReport(tree_size=size)
    history = history_of(session, pinned_key)
    report.keys = list(history.entries)
    for leaf_index, message in history.problems:
        report.add(leaf_index, "key", message)
    heads = [
        (head_size, root)
        for head_size, root in session.execute(
            select(TreeHead.tree_size, TreeHead.root_hash).order_by(TreeHead.tree_size)
        )
    ]
    tasks = blocks(
        bound,
        block_level,
        [head_size for head_size, _ in heads],
        check_objects=check_objects,
        key_spans=history.spans(),
    )
    count = default_workers() if workers is None else workers
    url = _worker_url(session) if count > 1 and len(tasks) > 1 and bound >= parallel_from else None
    if url is None:
        connection = session.connection()
        local = (check_block(connection, task) for task in tasks)
        return _fold(session, report, heads, local, block_level, progress)
    report.workers = min(count, len(tasks))
    pool = ProcessPoolExecutor(
        max_workers=report.workers,
        # Not fork: the parent may hold database connections and threads (a progress bar).
        mp_context=multiprocessing.get_context("spawn"),
        initializer=init_worker,
        initargs=(url,),
    )
    try:
        return _fold(session, report, heads, pool.map(run_block, tasks), block_level, progress)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _extent(session: Session) -> tuple[int, int]:
    """The tree size and one past the highest leaf index, read in one statement (one snapshot)."""
    row = session.execute(
        select(
            select(JournalState.value).where(JournalState.name == TREE_SIZE).scalar_subquery(),
            select(func.max(Event.leaf_index)).scalar_subquery(),
        )
    ).one()
    size = int(row[0] or 0)
    return size, max(size, 0 if row[1] is None else int(row[1]) + 1)


def _worker_url(session: Session) -> str | None:
    """The URL worker processes can open, or None when they could not see what we see."""
    bind = session.get_bind()
    if not isinstance(bind, Engine):
        return None  # a connection's transaction may hold rows no other connection sees
    url = bind.url
    if url.get_backend_name() == "sqlite" and (
        not url.database or url.database == ":memory:" or url.query.get("mode") == "memory"
    ):
        return None
    return url.render_as_string(hide_password=False)


def _fold(
    session: Session,
    report: JournalReport,
    heads: Sequence[tuple[int, bytes]],
    results: Iterable[BlockResult],
    level: int,
    progress: Callable[[int, int], None] | None,
) -> JournalReport:
    """Fold the blocks' results in leaf order: nodes above the blocks, heads' roots, the end."""
    peaks: list[bytes] = []  # of the complete blocks so far (subtrees of level >= ``level``)
    created: dict[merkle.NodeKey, bytes] = {}
    expected = 0
    head_at = 0
    last_good_size = 0
    for result in results:
        report.events += result.events
        report.objects_checked += result.objects_checked
        for problem in result.problems:
            report.add(problem.leaf_index, problem.kind, problem.message)
        while head_at < len(heads) and heads[head_at][0] in result.head_peaks:
            head_size, head_root = heads[head_at]
            root = merkle.root_from_peaks(peaks + result.head_peaks[head_size])
            fault = result.head_faults.get(head_size)
            if root != head_root:
                report.add(
                    last_good_size,
                    "root",
                    f"the leaves give another root at size {head_size} than the signed head "
                    f"(root_hash {head_root.hex()[:16]}...): a leaf in [{last_good_size}, "
                    f"{head_size}) was altered",
                )
            elif fault is not None:
                report.add(last_good_size, "head", fault)
            else:
                last_good_size = head_size
            report.heads_checked += 1
            head_at += 1
        if result.gap:
            return report  # every later root depends on the gap: nothing more to learn
        expected += result.leaves
        if result.leaves == 1 << level:
            new, peaks = merkle.append_leaf(result.start >> level, peaks, result.peaks[0])
            created.update(((lv + level, ix), h) for (lv, ix), h in new)
        else:
            peaks = peaks + result.peaks  # the last leaves: no block follows
        if progress is not None:
            progress(expected, report.tree_size)
        if result.ended:
            break
    report.root_hash = merkle.root_from_peaks(peaks)
    _compare_nodes(session, created, report)
    if expected != report.tree_size:
        report.add(
            min(expected, report.tree_size),
            "size",
            f"{expected} event rows but the journal counts {report.tree_size} leaves",
        )
    for head_size, _root in heads[head_at:]:
        report.add(
            min(expected, head_size),
            "head",
            f"head {head_size} covers leaves that do not exist (only {expected})",
        )
    return report


def _compare_nodes(
    session: Session, created: dict[merkle.NodeKey, bytes], report: JournalReport
) -> None:
    if not created:
        return
    by_level: dict[int, list[int]] = {}
    for level, index in created:
        by_level.setdefault(level, []).append(index)
    stored: dict[merkle.NodeKey, bytes] = {}
    for level, indices in by_level.items():
        rows = session.execute(
            select(JournalNode.index, JournalNode.hash).where(
                and_(
                    JournalNode.level == level,
                    JournalNode.index >= min(indices),
                    JournalNode.index <= max(indices),
                )
            )
        )
        stored.update({(level, ix): h for ix, h in rows})
    for (level, index), h in sorted(created.items(), key=lambda kv: kv[0][1] << kv[0][0]):
        if stored.get((level, index)) != h:
            report.add(
                index << level,
                "node",
                f"stored subtree hash (level {level}, index {index}) is missing or wrong",
            )
