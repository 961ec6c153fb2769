"""The archive's side of witnessing (C2SP ``tlog-witness``): asking witnesses to co-sign heads.

Each sealed head carries a ``tlog-checkpoint`` note signed with the archive's note key
(:func:`sae.journal.service.checkpoint_note`). After each seal, the background sealer
(:class:`sae.background.Sealer`, never the deposit's path) calls :func:`witness_round`: for
every witness of ``SAE_WITNESSES_FILE`` that has not co-signed the latest head, it posts
``old <size it last co-signed for us>``, the RFC 9162 consistency proof from that size and the
note to ``<url>/add-checkpoint``, verifies the returned ``cosignature/v1`` line against the
witness's vkey, and stores it (``head_cosignatures``). A head is *witnessed* once it has
``quorum`` cosignatures from the configured witnesses.

What a witness answers decides what happens next:

- 200 with a cosignature that verifies: stored.
- 409 with a size we sealed a head at (or 0), no larger than the head offered: the witness
  saw a later head than we remember (another instance asked first, our database lost a row),
  or was reset: asked again once, from that size.
- 409 with a size we never sealed, or larger than ours; 403 (our note's signature refused),
  404 (origin unknown to it), 400/422 (our proof refused), a cosignature that does not verify:
  **evidence** — of a fork, a rewritten history, a changed key, or a misconfiguration. It is
  journaled as ``journal.witness_refused`` (alert-worthy) and that witness is not asked again
  before a growing delay: a refusal is never retried blindly.
- a network error or a 5xx: asked again in later rounds, with a growing delay.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from sae.config import Settings
from sae.db import transaction, utcnow
from sae.errors import SAEError
from sae.journal import merkle, service
from sae.journal.errors import WitnessesConfigError
from sae.journal.models import HeadCosignature, TreeHead
from sae.journal.note import (
    COSIGNATURE_V1,
    Note,
    NoteError,
    Verifier,
    checkpoint_text,
    verify_cosignature,
)
from sae.recovery.replay import changes_no_state

log = logging.getLogger("sae.journal")

#: The journal event recorded when a witness refuses a head (see the module docstring).
WITNESS_REFUSED = "journal.witness_refused"
changes_no_state(
    WITNESS_REFUSED, "a witness's refusal is evidence to keep, not catalogue state to rebuild"
)
#: Who journals the refusals.
WITNESS_ACTOR = "system:witnessing"
#: How many characters of a refusing witness's reply are journaled.
BODY_EXCERPT = 500
#: Delays before asking a witness again: after a network error (doubling from the first, up to
#: the cap), and after a refusal (the same, from a longer start).
RETRY_FIRST_SECONDS = 5.0
REFUSAL_FIRST_SECONDS = 300.0
RETRY_CAP_SECONDS = 6 * 3600.0
#: A latest head left without a quorum for this many seal intervals makes ``/health`` fail.
UNWITNESSED_INTERVALS = 3


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Witness:
    """One witness the archive asks: its name (as its cosignatures say), URL and vkey."""

    name: str
    url: str
    vkey: str
    verifier: Verifier


@dataclass(frozen=True)
class WitnessSet:
    """``SAE_WITNESSES_FILE``: the witnesses and how many cosignatures make a head witnessed."""

    witnesses: tuple[Witness, ...]
    quorum: int

    @property
    def names(self) -> list[str]:
        return [w.name for w in self.witnesses]


def load_witnesses(settings: Settings) -> WitnessSet | None:
    """The witnesses ``SAE_WITNESSES_FILE`` declares (None when unset), checked at start.

    Refused with :class:`WitnessesConfigError` naming the problem: unreadable YAML, a witness
    without name/url/vkey, a vkey that does not parse or names another witness, a name twice,
    a quorum that is not between 1 and the number of witnesses.
    """
    if settings.witnesses_file is None:
        return None
    return parse_witnesses(Path(settings.witnesses_file))


def parse_witnesses(path: Path) -> WitnessSet:
    """Load and validate one witnesses file."""
    where = f"SAE_WITNESSES_FILE={path}"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise WitnessesConfigError(f"{where}: unreadable: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("witnesses"), list):
        raise WitnessesConfigError(f"{where}: expected a mapping with a 'witnesses' list")
    unknown = sorted(set(raw) - {"witnesses", "quorum"})
    if unknown:
        raise WitnessesConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    witnesses: list[Witness] = []
    for number, entry in enumerate(raw["witnesses"], start=1):
        witnesses.append(_witness(where, number, entry))
    names = [w.name for w in witnesses]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise WitnessesConfigError(f"{where}: witness {twice[0]!r} is declared twice")
    if not witnesses:
        raise WitnessesConfigError(f"{where}: no witness declared")
    quorum = raw.get("quorum", len(witnesses))
    if not isinstance(quorum, int) or isinstance(quorum, bool) or not 1 <= quorum <= len(names):
        raise WitnessesConfigError(
            f"{where}: quorum must be an integer from 1 to {len(names)} (the number of "
            f"witnesses), got {quorum!r}"
        )
    return WitnessSet(tuple(witnesses), quorum)


def _witness(where: str, number: int, entry: Any) -> Witness:
    if not isinstance(entry, dict):
        raise WitnessesConfigError(f"{where}: witness #{number} is not a mapping")
    missing = [k for k in ("name", "url", "vkey") if not isinstance(entry.get(k), str)]
    if missing:
        raise WitnessesConfigError(
            f"{where}: witness #{number} lacks {', '.join(missing)} (strings)"
        )
    name, url, vkey = entry["name"], entry["url"].rstrip("/"), entry["vkey"].strip()
    if not url.startswith(("http://", "https://")):
        raise WitnessesConfigError(f"{where}: witness {name!r}: url must be http(s)://…")
    try:
        verifier = Verifier.parse(vkey)
    except NoteError as exc:
        raise WitnessesConfigError(f"{where}: witness {name!r}: bad vkey: {exc}") from None
    if verifier.key_type != COSIGNATURE_V1:
        raise WitnessesConfigError(
            f"{where}: witness {name!r}: its vkey is not a cosignature/v1 key (type 0x04)"
        )
    if verifier.name != name:
        raise WitnessesConfigError(
            f"{where}: witness {name!r}: its vkey is the key of {verifier.name!r}"
        )
    return Witness(name=name, url=url, vkey=vkey, verifier=verifier)


# --------------------------------------------------------------------------- one round


@dataclass
class _Pace:
    """When a witness may be asked again (this process's memory; a restart asks at once)."""

    not_before: float = 0.0
    failures: int = 0


@dataclass
class WitnessClient:
    """Asks the witnesses to co-sign the latest head; one per process (the sealer's)."""

    sessions: sessionmaker[Session]
    witnesses: WitnessSet
    timeout: float = 10.0
    _pace: dict[str, _Pace] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: Keep one HTTP client (and each witness's connection) from round to round: the
    #: sealer's client, which lives as long as the process (:meth:`close` at its stop).
    #: Otherwise each round makes its own and closes it (``sae journal witness``, tests).
    #: ``httpx.post`` made a client per request, and a client costs about 28 ms of CPU (its
    #: TLS context loads the CA bundle): twice per head with two witnesses, on the cores the
    #: deposits use.
    keep_alive: bool = False
    _http: httpx.Client | None = None

    def close(self) -> None:
        """Close the HTTP client (its kept-alive connections); a later round makes another.
        Skipped while a round is still waiting for a witness: stopping must not wait for it."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            self._close_http()
        finally:
            self._lock.release()

    def _close_http(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def round(self, *, force: bool = False) -> dict[str, str]:
        """Ask every witness that lacks the latest head's cosignature; ``{name: outcome}``.

        ``force`` ignores the delays after a failure or refusal (``sae journal witness``).
        """
        with self._lock:  # the sealer's round and a command's never interleave in a process
            try:
                return self._round(force)
            finally:
                if not self.keep_alive:
                    self._close_http()

    def _round(self, force: bool) -> dict[str, str]:
        with self.sessions() as session:
            head = latest_noted_head(session)
            if head is None:
                return {}
            done = set(
                session.scalars(
                    select(HeadCosignature.witness).where(
                        HeadCosignature.tree_size == head.tree_size
                    )
                )
            )
        outcomes: dict[str, str] = {}
        now = time.monotonic()
        for witness in self.witnesses.witnesses:
            if witness.name in done:
                continue
            pace = self._pace.setdefault(witness.name, _Pace())
            if not force and now < pace.not_before:
                outcomes[witness.name] = "waiting"
                continue
            outcome = self._ask(witness, head)
            outcomes[witness.name] = outcome.kind
            if outcome.kind == "cosigned":
                pace.failures, pace.not_before = 0, 0.0
            else:
                first = REFUSAL_FIRST_SECONDS if outcome.kind == "refused" else RETRY_FIRST_SECONDS
                delay = min(first * 2**pace.failures, RETRY_CAP_SECONDS)
                pace.failures += 1
                pace.not_before = time.monotonic() + delay
        return outcomes

    def _ask(self, witness: Witness, head: TreeHead) -> _Outcome:
        with self.sessions() as session:
            old = last_cosigned_size(session, witness.name, below=head.tree_size + 1)
        retried = False
        while True:
            try:
                with self.sessions() as session:
                    body = add_checkpoint_body(session, old, head)
            except SAEError as exc:  # the proof cannot be built (a corrupt journal): not now
                log.error("journal.witness_request_failed %s: %s", exc.code, exc.detail)
                return _Outcome("unreachable")
            try:
                if self._http is None:
                    self._http = httpx.Client()
                reply = self._http.post(
                    f"{witness.url}/add-checkpoint",
                    content=body,
                    timeout=self.timeout,
                    headers={"Content-Type": "text/plain; charset=utf-8"},
                )
            except (httpx.HTTPError, OSError) as exc:
                log.warning("journal.witness_unreachable %s: %s", witness.name, exc)
                return _Outcome("unreachable")
            if reply.status_code == 200:
                return self._store(witness, head, reply.text)
            if reply.status_code >= 500:
                log.warning("journal.witness_failed %s: HTTP %s", witness.name, reply.status_code)
                return _Outcome("unreachable")
            if reply.status_code == 409 and not retried:
                theirs = _size(reply.text)
                # 0: a witness whose state was reset — the empty tree is every log's start.
                if (
                    theirs is not None
                    and theirs <= head.tree_size
                    and (theirs == 0 or self._sealed(theirs))
                ):
                    old, retried = theirs, True
                    continue
            return self._refused(witness, head, old, reply.status_code, reply.text)

    def _sealed(self, size: int) -> bool:
        with self.sessions() as session:
            found = session.scalar(select(TreeHead.id).where(TreeHead.tree_size == size))
        return found is not None

    def _store(self, witness: Witness, head: TreeHead, text: str) -> _Outcome:
        assert head.note is not None
        body = checkpoint_text(head.origin, head.tree_size, head.root_hash)
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                stamp = verify_cosignature(witness.verifier, body, line)
            except NoteError:
                continue  # another key's line, or a bad one: only a verified line counts
            try:
                with transaction(self.sessions) as session:
                    session.add(
                        HeadCosignature(
                            tree_size=head.tree_size,
                            witness=witness.name,
                            key_id=witness.verifier.key_id.hex(),
                            cosigned_at=stamp,
                            line=line,
                        )
                    )
            except IntegrityError:
                pass  # another instance stored this witness's cosignature first
            log.info("journal.cosigned tree_size=%s witness=%s", head.tree_size, witness.name)
            return _Outcome("cosigned")
        return self._refused(
            witness, head, None, 200, f"no cosignature verifies against the vkey: {text}"
        )

    def _refused(
        self, witness: Witness, head: TreeHead, old: int | None, status: int, text: str
    ) -> _Outcome:
        """Journal the refusal: evidence of a fork, a rewrite or a misconfiguration."""
        excerpt = text[:BODY_EXCERPT]
        log.error(
            "journal.witness_refused witness=%s status=%s tree_size=%s body=%r",
            witness.name,
            status,
            head.tree_size,
            excerpt,
        )
        with transaction(self.sessions) as session:
            service.append_event(
                session,
                type=WITNESS_REFUSED,
                actor=WITNESS_ACTOR,
                payload={
                    "witness": witness.name,
                    "url": witness.url,
                    "status": status,
                    "body": excerpt,
                    "tree_size": head.tree_size,
                    "old": old,
                },
            )
        return _Outcome("refused")


@dataclass(frozen=True)
class _Outcome:
    kind: str  # cosigned | unreachable | refused


def _size(text: str) -> int | None:
    """The size in a 409's body (``text/x.tlog.size``: a decimal number and a newline)."""
    value = text.strip()
    return int(value) if value.isdigit() and len(value) < 20 else None


def add_checkpoint_body(session: Session, old: int, head: TreeHead) -> bytes:
    """The ``add-checkpoint`` request: ``old N``, the consistency proof's hashes (base64, one a
    line), an empty line, then the note."""
    assert head.note is not None
    lines = [f"old {old}"]
    if 0 < old < head.tree_size:
        proof = service.consistency(session, old, head.tree_size)
        lines += [base64.b64encode(h).decode() for h in proof.proof]
    return ("\n".join(lines) + "\n\n").encode() + head.note


# --------------------------------------------------------------------------- queries


def latest_noted_head(session: Session) -> TreeHead | None:
    """The latest head that carries a note (heads before notes existed are never witnessed)."""
    return session.scalars(
        select(TreeHead)
        .where(TreeHead.note.is_not(None))
        .order_by(TreeHead.tree_size.desc())
        .limit(1)
    ).first()


def last_cosigned_size(session: Session, witness: str, *, below: int | None = None) -> int:
    """The largest size ``witness`` co-signed for us (below ``below``), 0 if none."""
    query = select(func.max(HeadCosignature.tree_size)).where(HeadCosignature.witness == witness)
    if below is not None:
        query = query.where(HeadCosignature.tree_size < below)
    return int(session.scalar(query) or 0)


def cosignatures(
    session: Session, size: int, names: list[str] | None = None
) -> list[HeadCosignature]:
    """The stored cosignatures of the head of ``size`` (of the named witnesses), by name."""
    query = select(HeadCosignature).where(HeadCosignature.tree_size == size)
    if names is not None:
        query = query.where(HeadCosignature.witness.in_(names))
    return list(session.scalars(query.order_by(HeadCosignature.witness)))


def witnessed_note(session: Session, head: TreeHead) -> bytes | None:
    """The head's note with the archive's signature then every stored cosignature line (by
    witness name), as auditors and bundles receive it; None for a head without a note."""
    if head.note is None:
        return None
    lines = [c.line for c in cosignatures(session, head.tree_size)]
    return bytes(Note.parse(head.note).with_signatures(*lines)) if lines else head.note


def latest_witnessed_head(session: Session, witnesses: WitnessSet) -> TreeHead | None:
    """The latest head with ``quorum`` cosignatures from the configured witnesses."""
    sizes = (
        select(HeadCosignature.tree_size)
        .where(HeadCosignature.witness.in_(witnesses.names))
        .group_by(HeadCosignature.tree_size)
        .having(func.count() >= witnesses.quorum)
        .order_by(HeadCosignature.tree_size.desc())
        .limit(1)
    )
    size = session.scalar(sizes)
    if size is None:
        return None
    return session.scalars(select(TreeHead).where(TreeHead.tree_size == size)).first()


def witnessed_covering_head(
    session: Session, witnesses: WitnessSet, leaf_index: int
) -> TreeHead | None:
    """The earliest witnessed head that includes leaf ``leaf_index``."""
    sizes = (
        select(HeadCosignature.tree_size)
        .where(
            HeadCosignature.witness.in_(witnesses.names),
            HeadCosignature.tree_size > leaf_index,
        )
        .group_by(HeadCosignature.tree_size)
        .having(func.count() >= witnesses.quorum)
        .order_by(HeadCosignature.tree_size)
        .limit(1)
    )
    size = session.scalar(sizes)
    if size is None:
        return None
    return session.scalars(select(TreeHead).where(TreeHead.tree_size == size)).first()


@dataclass(frozen=True)
class WitnessStatus:
    """What ``/health`` and the console say about witnessing."""

    ok: bool
    quorum: int
    witnesses: list[str]
    witnessed_size: int | None
    witnessed_at: dt.datetime | None
    latest_size: int | None
    unwitnessed_since: dt.datetime | None

    def age_seconds(self) -> float | None:
        """How old the latest witnessed head is."""
        if self.witnessed_at is None:
            return None
        return (utcnow() - self.witnessed_at).total_seconds()

    def detail(self) -> str:
        if self.witnessed_size is None:
            said = "no head witnessed yet"
        else:
            said = f"size {self.witnessed_size} witnessed, sealed {self.age_seconds():.0f} s ago"
        if not self.ok:
            said += f"; the latest head ({self.latest_size}) lacks a quorum of {self.quorum}"
        return said


def witness_status(session: Session, witnesses: WitnessSet, settings: Settings) -> WitnessStatus:
    """The latest witnessed head and its age; failing when the heads sealed after it have
    waited more than :data:`UNWITNESSED_INTERVALS` seal intervals for their quorum."""
    witnessed = latest_witnessed_head(session, witnesses)
    latest = latest_noted_head(session)
    after = witnessed.tree_size if witnessed is not None else -1
    first_unwitnessed = session.scalar(
        select(TreeHead.timestamp)
        .where(TreeHead.note.is_not(None), TreeHead.tree_size > after)
        .order_by(TreeHead.tree_size)
        .limit(1)
    )
    patience = dt.timedelta(minutes=settings.seal_interval_minutes * UNWITNESSED_INTERVALS)
    ok = first_unwitnessed is None or utcnow() - first_unwitnessed <= patience
    return WitnessStatus(
        ok=ok,
        quorum=witnesses.quorum,
        witnesses=witnesses.names,
        witnessed_size=witnessed.tree_size if witnessed is not None else None,
        witnessed_at=witnessed.timestamp if witnessed is not None else None,
        latest_size=latest.tree_size if latest is not None else None,
        unwitnessed_since=first_unwitnessed,
    )


# --------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class WitnessCheck:
    """:func:`check_against_witnesses`' findings: ``problems`` fail the verification,
    ``refusals`` (the journaled ``journal.witness_refused``) are reported for investigation."""

    problems: list[str]
    refusals: list[str]


def check_against_witnesses(
    session: Session, witnesses: WitnessSet, origin: str, *, timeout: float = 10.0
) -> WitnessCheck:
    """What the witnesses' records say against this journal (``sae journal verify``).

    Each witness's latest co-signed checkpoint for ``origin`` (``GET <url>/<sha256(origin)>/
    checkpoint``, its cosignature checked) must be a tree this journal holds: a size no larger
    than ours, with the root our leaves give at that size. A witness that co-signed a larger
    tree or another root has seen a history this database no longer tells — it was rewritten
    or replaced. A witness that does not answer is a problem too: the check could not be made.
    The refusals journaled (``journal.witness_refused``) are listed, not failed on: a refusal
    may have been a misconfiguration since put right, and the witnesses' records say whether
    the history is the one they saw.
    """
    from sae.journal.models import Event
    from sae.journal.note import parse_checkpoint

    problems: list[str] = []
    size = service.tree_size(session)
    origin_hash = hashlib.sha256(origin.encode()).hexdigest()
    for witness in witnesses.witnesses:
        try:
            reply = httpx.get(f"{witness.url}/{origin_hash}/checkpoint", timeout=timeout)
        except (httpx.HTTPError, OSError) as exc:
            problems.append(f"witness {witness.name}: unreachable ({exc})")
            continue
        if reply.status_code == 404:
            continue  # it never co-signed for us: nothing to compare
        if reply.status_code != 200:
            problems.append(f"witness {witness.name}: HTTP {reply.status_code}")
            continue
        try:
            note = Note.parse(reply.content)
            line = next(s.line for s in note.signatures if witness.verifier.matches(s))
            verify_cosignature(witness.verifier, note.text, line)
            theirs = parse_checkpoint(note.text)
        except (NoteError, StopIteration):
            problems.append(f"witness {witness.name}: its checkpoint has no valid cosignature")
            continue
        if theirs.size > size:
            problems.append(
                f"witness {witness.name} co-signed a tree of {theirs.size} leaves; this journal "
                f"has {size}: its history was truncated or replaced"
            )
        elif theirs.size > 0 and merkle.root(theirs.size, service.DbNodes(session)) != (
            theirs.root_hash
        ):
            problems.append(
                f"witness {witness.name} co-signed another root at size {theirs.size} than "
                "this journal's: its history was rewritten"
            )
    refusals = session.scalars(
        select(Event).where(Event.type == WITNESS_REFUSED).order_by(Event.leaf_index)
    )
    listed = [
        f"leaf {event.leaf_index}: witness {event.payload.get('witness')} refused head "
        f"{event.payload.get('tree_size')} (HTTP {event.payload.get('status')}): "
        f"{str(event.payload.get('body', ''))[:120]}"
        for event in refusals
    ]
    return WitnessCheck(problems, listed)
