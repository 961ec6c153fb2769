"""``sae journal verify``: recompute the whole tree from the catalog and compare with everything.

Detects an event row modified (any column: the leaf is re-derived from the columns), deleted
(a gap in the leaf indices), inserted or reordered (the leaf embeds its index; the roots stop
matching the signed heads), a stored subtree hash altered, a head whose signature, checkpoint
or time-stamp imprint does not check, and a data object whose stored SHA-512 differs from what
the journal recorded. The report names the first bad leaf index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509
from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from sae.journal import merkle
from sae.journal.checkpoint import Checkpoint, CheckpointFormatError, verify_signature
from sae.journal.errors import TimestampInvalid
from sae.journal.models import Event, JournalNode, TreeHead
from sae.journal.service import encode_leaf, tree_size
from sae.journal.tsa import verify_response

CHUNK = 10_000
MAX_PROBLEMS = 100
DIRECT = ("missing", "leaf", "leaf_hash", "size", "object")


@dataclass
class Problem:
    """One thing that does not check; ``leaf_index`` is the earliest leaf it may concern."""

    leaf_index: int | None
    kind: str
    message: str


@dataclass
class JournalReport:
    """The outcome of :func:`verify_journal`."""

    tree_size: int = 0
    events: int = 0
    heads_checked: int = 0
    objects_checked: int = 0
    problems: list[Problem] = field(default_factory=list)

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


def _check_head(head: TreeHead, root: bytes, report: JournalReport, last_good: int) -> bool:
    size = head.tree_size
    if root != head.root_hash:
        report.add(
            last_good,
            "root",
            f"the leaves give another root at size {size} than the signed head (root_hash "
            f"{head.root_hash.hex()[:16]}...): a leaf in [{last_good}, {size}) was altered",
        )
        return False
    try:
        cp = Checkpoint.from_bytes(head.checkpoint)
    except CheckpointFormatError as exc:
        report.add(last_good, "head", f"head {size}: malformed checkpoint ({exc})")
        return False
    if (cp.tree_size, cp.root_hash, cp.origin) != (size, head.root_hash, head.origin):
        report.add(last_good, "head", f"head {size}: checkpoint does not match its columns")
        return False
    if not verify_signature(head.public_key_pem, head.checkpoint, head.signature):
        report.add(last_good, "head", f"head {size}: SAE's signature does not verify")
        return False
    try:
        chain = _chain(head.tsa_chain_pem)
        verify_response(
            head.tsr,
            digest=hashlib.sha256(head.checkpoint).digest(),
            anchors=chain[-1:],
            extra_certs=chain,
        )
    except (TimestampInvalid, ValueError) as exc:
        report.add(last_good, "head", f"head {size}: time-stamp token refused ({exc})")
        return False
    return True


def _chain(chain_pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(chain_pem)


def verify_journal(
    session: Session,
    *,
    check_objects: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> JournalReport:
    """Recompute the tree from every event row and check it against heads, nodes and objects."""
    report = JournalReport(tree_size=tree_size(session))
    heads = list(session.scalars(select(TreeHead).order_by(TreeHead.tree_size)))
    head_at = 0
    last_good_size = 0
    peaks: list[bytes] = []
    expected = 0
    claims: dict[str, tuple[int, str]] = {}
    last = -1
    while True:
        rows = session.execute(
            select(
                Event.leaf_index,
                Event.type,
                Event.actor,
                Event.occurred_at,
                Event.payload,
                Event.transfer_id,
                Event.unit_id,
                Event.object_id,
                Event.digests,
                Event.leaf,
                Event.leaf_hash,
            )
            .where(Event.leaf_index > last)
            .order_by(Event.leaf_index)
            .limit(CHUNK)
        ).all()
        if not rows:
            break
        created: dict[merkle.NodeKey, bytes] = {}
        for row in rows:
            index = row.leaf_index
            report.events += 1
            if index != expected:
                report.add(
                    expected,
                    "missing",
                    f"leaves {expected}..{index - 1} are missing (rows deleted?)",
                )
                return report  # every later root depends on the gap: nothing more to learn
            derived = encode_leaf(
                leaf_index=index,
                type=row.type,
                actor=row.actor,
                occurred_at=row.occurred_at,
                payload=row.payload,
                transfer_id=row.transfer_id,
                unit_id=row.unit_id,
                object_id=row.object_id,
                object_digests=row.digests or {},
            )
            if derived != row.leaf:
                report.add(index, "leaf", f"leaf {index}: its columns no longer give its bytes")
            lh = merkle.leaf_hash(row.leaf)
            if lh != row.leaf_hash:
                report.add(index, "leaf_hash", f"leaf {index}: stored leaf hash is wrong")
            if check_objects:
                for object_id, digest in (row.digests or {}).items():
                    claims.setdefault(object_id, (index, digest))
            new_nodes, peaks = merkle.append_leaf(index, peaks, lh)
            created.update(new_nodes)
            expected += 1
            while head_at < len(heads) and heads[head_at].tree_size == expected:
                if _check_head(
                    heads[head_at], merkle.root_from_peaks(peaks), report, last_good_size
                ):
                    last_good_size = expected
                report.heads_checked += 1
                head_at += 1
        _compare_nodes(session, created, report)
        if claims:
            # Checked chunk by chunk: memory stays constant however many objects there are.
            _check_objects(session, claims, report)
            claims = {}
        last = rows[-1].leaf_index
        if progress is not None:
            progress(expected, report.tree_size)
    if expected != report.tree_size:
        report.add(
            min(expected, report.tree_size),
            "size",
            f"{expected} event rows but the journal counts {report.tree_size} leaves",
        )
    for head in heads[head_at:]:
        report.add(
            min(expected, head.tree_size),
            "head",
            f"head {head.tree_size} covers leaves that do not exist (only {expected})",
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


def _check_objects(
    session: Session, claims: dict[str, tuple[int, str]], report: JournalReport
) -> None:
    from sae.catalog.models import DataObject

    ids = list(claims)
    for start in range(0, len(ids), 1000):
        batch = ids[start : start + 1000]
        rows = session.execute(
            select(DataObject.id, DataObject.sha512).where(DataObject.id.in_(batch))
        )
        for object_id, sha512 in rows:
            report.objects_checked += 1
            leaf_index, recorded = claims[object_id]
            if sha512 is not None and sha512.lower() != recorded.lower():
                report.add(
                    leaf_index,
                    "object",
                    f"object {object_id}: the catalog's SHA-512 differs from leaf {leaf_index}",
                )
