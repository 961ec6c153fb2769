"""Format identification against PRONOM, with fido's signatures (``opf-fido``).

fido (the Open Preservation Foundation's identifier) carries PRONOM's signature file converted to
regular expressions (``formats-v*.xml``), and its container signature file. It is used here as a
library: its signature files are loaded once per process, and each file is matched on its first
and last :data:`BUFFER` bytes — which the ingest keeps while it streams the file to the offers
(no second read, no subprocess). fido's own ``match_formats`` walks its XML elements for every
file (about 14 ms a page of the a3m corpus); :class:`Identifier` compiles the same patterns
once, indexes the signatures anchored at the start of the file by the bytes they can begin
with, and rules a pattern out first by what is cheap: its shortest length, and a run of literal
bytes it must contain, looked for only where it can lie. The literals are found in a few passes
over the head and the tail (Aho-Corasick, ``ahocorasick-rs``: the first and last 512 bytes and
4 KiB, the whole head and tail, :data:`SCANS`), not one scan per literal, and a signature whose
literal is not in the file is not tried at all (about 0.6 ms a page, 1.4 ms with one
``bytes.find`` per literal). The answers are fido's (the tests compare both on the samples,
on generated files of many kinds and on literals planted at the passes' edges).

A container format (ZIP, OLE2) is identified as the container: telling a ``.docx`` from a
``.xlsx`` needs the members, which the head and tail do not give. The container's PUID is then
what is recorded; a declaration of a format PRONOM knows to live in that container is not a
contradiction (:func:`contradiction`).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import queue
import re
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import ahocorasick_rs

import seda
from sae.ingest.hashing import IDENTIFY_BYTES

hyperscan: Any
try:  # Intel's Hyperscan (Vectorscan), where a wheel exists: Linux x86_64, macOS arm64
    import hyperscan
except ImportError:  # elsewhere the passes are Aho-Corasick's alone, with the same answers
    hyperscan = None

#: Whether the passes over a whole head or tail use Hyperscan (:class:`_Vectorised`).
VECTORISED = hyperscan is not None

log = logging.getLogger("sae.ingest.identify")

_Signature = tuple["_Pattern", ...]

#: Bytes of the head and of the tail matched: fido's default window (DROID's is 64 KiB; with
#: the literals' reach, 64 KiB cost as much on the a3m corpus, see docs/benchmarks.md).
BUFFER = IDENTIFY_BYTES

ZIP_PUID = "x-fmt/263"
OLE2_PUID = "fmt/111"
#: The container formats whose members say what the file is, and PRONOM's container type.
CONTAINERS = {ZIP_PUID: "ZIP", OLE2_PUID: "OLE2"}

#: MIME types that name the same thing (IANA's name first); the declared and the measured are
#: compared by their first name. ``application/octet-stream`` says nothing and contradicts
#: nothing.
MIME_SYNONYMS: dict[str, str] = {
    "text/xml": "application/xml",
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/tif": "image/tiff",
    "image/x-tiff": "image/tiff",
    "application/x-pdf": "application/pdf",
    "application/acrobat": "application/pdf",
    "application/x-zip-compressed": "application/zip",
    "application/x-zip": "application/zip",
    "image/x-png": "image/png",
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "application/x-rtf": "application/rtf",
    "text/rtf": "application/rtf",
}
UNKNOWN_MIME = "application/octet-stream"


@dataclass(frozen=True)
class Identification:
    """What the content is: PRONOM's PUID, name, version and MIME types of the best match.

    ``candidates``: every PUID matched that no other match has priority over (several when the
    signatures cannot tell, e.g. two versions of a format). ``puid`` is the first of them.
    """

    puid: str
    name: str | None
    version: str | None
    mime_types: tuple[str, ...]
    candidates: tuple[str, ...] = ()

    @property
    def mime_type(self) -> str | None:
        return self.mime_types[0] if self.mime_types else None

    @property
    def container(self) -> str | None:
        return CONTAINERS.get(self.puid)


@dataclass(frozen=True)
class _Format:
    puid: str
    name: str | None
    version: str | None
    mime_types: tuple[str, ...]
    #: Each signature: its patterns, cheapest first; all must match.
    signatures: tuple[_Signature, ...]
    priority_over: frozenset[str]


@dataclass
class Identifier:
    """PRONOM's formats as fido carries them, compiled once (see the module's docstring)."""

    formats: list[_Format]
    pronom_version: str
    #: PUIDs PRONOM identifies inside each container type (``ZIP``, ``OLE2``).
    in_container: dict[str, frozenset[str]] = field(default_factory=dict)
    #: Hyperscan for the long passes when installed (False: Aho-Corasick for every pass).
    vectorised: bool = VECTORISED
    by_puid: dict[str, _Format] = field(init=False)
    #: The MIME types of the formats of each container type, and of the container itself.
    container_mimes: dict[str, frozenset[str]] = field(init=False)
    #: Signatures anchored at offset 0, by the first byte they accept (256 lists); the others.
    _by_first: list[list[tuple[_Format, _Signature]]] = field(init=False)
    _anywhere: list[tuple[_Format, _Signature]] = field(init=False)
    _order: dict[str, int] = field(init=False)
    #: The literals found in one pass (Aho-Corasick) over the head's first bytes, the whole
    #: head, the tail's last bytes, the whole tail (:data:`SCANS`).
    _scans: tuple[_Literals, ...] = field(init=False)
    #: The literals of the passes over the whole head and the whole tail, together: when the
    #: two overlap, their shared bytes are scanned once (:class:`_Scan`).
    _joint: _Literals = field(init=False)
    #: The signatures one of whose patterns has a literal found by those passes, by that
    #: literal (the signature cannot match when its literal is not in the file): by pass.
    _gated: list[dict[bytes, list[tuple[_Format, _Signature]]]] = field(init=False)

    def __post_init__(self) -> None:
        self.formats = self._needles(self.formats)
        self.by_puid = {fmt.puid: fmt for fmt in self.formats}
        self._order = {fmt.puid: index for index, fmt in enumerate(self.formats)}
        self.container_mimes = {}
        for puid, kind in CONTAINERS.items():
            puids = {puid, *self.in_container.get(kind, ())}
            self.container_mimes[kind] = frozenset(
                m for p in puids for m in (normal_mime(x) for x in self.mime_types_of(p)) if m
            )
        self._by_first = [[] for _ in range(256)]
        self._anywhere = []
        literals: list[set[bytes]] = [set() for _ in SCANS]
        self._gated = [{} for _ in SCANS]
        for fmt in self.formats:
            for signature in fmt.signatures:
                scanned = [p for p in signature if p.literal is not None and p.scan >= 0]
                for pattern in signature:
                    for needle in pattern.needles:
                        if needle.scan >= 0:
                            literals[needle.scan].add(needle.literal)
                if scanned:
                    gate = max(scanned, key=lambda p: len(p.literal or b""))
                    gated = self._gated[gate.scan].setdefault(gate.literal or b"", [])
                    gated.append((fmt, signature))
                    continue
                firsts = [p.first for p in signature if p.first is not None]
                first = min(firsts, key=len) if firsts else None
                if first is None:
                    self._anywhere.append((fmt, signature))
                else:
                    for byte in first:
                        self._by_first[byte].append((fmt, signature))
        # The passes over a whole head or tail (128 KiB each) are the long ones: Hyperscan's
        # where it is installed (:data:`VECTORISED`, and this identifier's ``vectorised``).
        self._scans = tuple(
            _Literals(found, vectorised=self.vectorised and limit is None)
            for found, (_, limit) in zip(literals, SCANS, strict=True)
        )
        self._joint = _Literals(
            literals[_WHOLE_HEAD] | literals[_WHOLE_TAIL], vectorised=self.vectorised
        )

    @staticmethod
    def _needles(formats: list[_Format]) -> list[_Format]:
        """The formats with each pattern's other runs (after its literal) looked for by a pass
        only where that pass already looks for some pattern's literal, else by ``bytes.find``
        in their window once the literal is found: each literal more in a pass costs every file
        (the 196 other runs of the whole head tripled its pass), a ``find`` only the files that
        got that far."""
        passes: list[set[bytes]] = [set() for _ in SCANS]
        for fmt in formats:
            for signature in fmt.signatures:
                for pattern in signature:
                    if pattern.needles and pattern.scan >= 0:
                        passes[pattern.scan].add(pattern.needles[0].literal)

        def kept(needle: _Needle) -> _Needle:
            if needle.scan < 0 or needle.literal in passes[needle.scan]:
                return needle
            return replace(needle, scan=-1)

        return [
            replace(
                fmt,
                signatures=tuple(
                    tuple(
                        replace(p, needles=(*p.needles[:1], *map(kept, p.needles[1:])))
                        for p in signature
                    )
                    for signature in fmt.signatures
                ),
            )
            for fmt in formats
        ]

    def identify(self, head: bytes, tail: bytes, size: int | None = None) -> Identification | None:
        """The format of a file from its first and last bytes; None when no signature matches
        (and for an empty file: fido's signatures of empty content are not identifications).
        ``size``, the file's, lets the bytes the head and the tail share be scanned once (a
        head shorter than :data:`BUFFER` is the whole file: its size need not be given)."""
        if not head:
            return None
        if size is None and len(head) < BUFFER:
            size = len(head)
        matched: dict[str, _Format] = {}
        found = _Scan(head, tail, self._scans, self._joint, size)
        candidates = [*self._by_first[head[0]], *self._anywhere]
        for scan, gated in enumerate(self._gated):
            for literal in found.starts[scan]:
                candidates += gated.get(literal, ())
        for fmt, signature in candidates:
            if fmt.puid not in matched and all(p.matches(head, tail, found) for p in signature):
                matched[fmt.puid] = fmt
        if not matched:
            return None
        best = [
            fmt
            for fmt in matched.values()
            if not any(fmt.puid in other.priority_over for other in matched.values())
        ]
        # The order is PRONOM's (the signature file's), as fido reports it.
        best.sort(key=lambda fmt: self._order[fmt.puid])
        first = best[0]
        return Identification(
            puid=first.puid,
            name=first.name,
            version=first.version,
            mime_types=first.mime_types,
            candidates=tuple(fmt.puid for fmt in best),
        )

    def mime_types_of(self, puid: str) -> tuple[str, ...]:
        fmt = self.by_puid.get(puid)
        return fmt.mime_types if fmt is not None else ()


_PARSER: Any = importlib.import_module("re._parser")  # the parser behind re.compile
_UNBOUNDED = 1 << 30


@dataclass(frozen=True)
class _Needle:
    """A run of literal bytes every match of a pattern contains, and where it can lie: how far
    from the start (BOF) or the end (EOF anchored at the end) it can end or begin at most (None:
    anywhere in the pattern's window), and which pass finds it (-1: ``bytes.find``)."""

    literal: bytes
    reach: int | None
    scan: int


@dataclass(frozen=True)
class _Pattern:
    """A compiled pattern of a signature, and what makes it cheap to rule out."""

    position: str  # BOF, EOF, VAR or IFB, as fido writes it
    regex: re.Pattern[bytes]
    #: The shortest match; the longest (None when unbounded, or for a VAR pattern, or an
    #: EOF pattern not anchored at the end: then the whole buffer is searched).
    shortest: int
    longest: int | None
    #: Runs of bytes every match contains, looked for before the regex runs (the first is the
    #: pattern's literal, the one that gates its signature; the others are those a pass finds).
    needles: tuple[_Needle, ...]
    #: The bytes a BOF pattern can start with (None: any).
    first: frozenset[int] | None

    @property
    def literal(self) -> bytes | None:
        return self.needles[0].literal if self.needles else None

    @property
    def literal_reach(self) -> int | None:
        return self.needles[0].reach if self.needles else None

    @property
    def scan(self) -> int:
        """Which of the passes (:data:`SCANS`) finds the literal; -1: ``bytes.find``."""
        return self.needles[0].scan if self.needles else -1

    def matches(self, head: bytes, tail: bytes, found: _Scan) -> bool:
        """Whether the pattern matches; ``found`` remembers, for one file, which literals are
        in which part of it (several signatures look for the same)."""
        if self.position == "EOF":
            buffer = tail
        else:  # BOF; VAR and IFB are searched in the head, as fido does
            buffer = head
        size = len(buffer)
        if size < self.shortest:
            return False
        # Where a match can lie: the first (BOF) or last (EOF, anchored at the end) ``longest``
        # bytes when the pattern's length is bounded, else anywhere.
        start, end = 0, size
        if self.longest is not None:
            if self.position == "EOF":
                start = max(0, size - self.longest)
            else:
                end = min(size, self.longest)
        eof = self.position == "EOF"
        for needle in self.needles:
            low, high = start, end
            if needle.reach is not None:
                if eof:
                    low = max(low, size - needle.reach)
                else:
                    high = min(high, needle.reach)
            if not found.has(eof, needle.literal, low, high, needle.scan):
                return False
        if self.position == "BOF":
            return self.regex.match(buffer) is not None
        if self.position == "EOF" and self.longest is not None:
            return self.regex.search(buffer, max(0, size - self.longest)) is not None
        return self.regex.search(buffer) is not None

    @property
    def cost(self) -> int:
        """The order of a signature's patterns (all must match: the cheapest refuses first)."""
        if self.first is not None:
            return 0
        if self.literal is not None or self.longest is not None:
            return 1
        return 2


#: A greedy repeat of any byte, then the end: ``.{0,20000}\Z``.
_ANY_THEN_END = re.compile(rb"(?<!\\)\.(\{[0-9]*,?[0-9]*\}|\*|\+|\?)\\Z\Z")


def _compile(position: str, source: bytes) -> _Pattern:
    regex = re.compile(source)
    items = list(_PARSER.parse(source, regex.flags))
    shortest, longest = _PARSER.parse(source, regex.flags).getwidth()
    ends = bool(items) and items[-1] == (_PARSER.AT, _PARSER.AT_END_STRING)
    if ends and _any_repeat(items[-2:-1], regex.flags):
        # ``X.{m,n}\Z`` where ``.`` is any byte: if the most bytes the repeat can take do not
        # reach the end, fewer do not either, so it need not give any back (possessive: the
        # same matches, without trying each shorter repeat at each place X matched).
        possessive = _ANY_THEN_END.sub(rb".\1+\\Z", source)
        if possessive != source:
            regex = re.compile(possessive)
    bounded = longest < _UNBOUNDED and (position == "BOF" or (position == "EOF" and ends))

    def needle(literal: bytes, reach: int | None) -> _Needle:
        window = reach if reach is not None else (longest if bounded else None)
        return _Needle(literal, reach, _scan_of(position, literal, window))

    runs = _runs(items, position, ends)
    needles: list[_Needle] = []
    if runs:
        primary = _literal(runs)
        needles.append(needle(*primary))
        # The other runs too (:meth:`Identifier._needles` says how each is looked for): Adobe
        # Illustrator's ``\A%PDF-1\.4.{1,32000}%!PS-Adobe-3\.0.{128,1024}%AI5_FileFormat 6``
        # is gated by ``%PDF-1.4`` and ran its regex over every PDF 1.4 (0.28 ms a file of the
        # a3m corpus for its three versions) when ``%!PS-Adobe-3.0`` was in none.
        needles += [needle(*run) for run in runs if run != primary]
    return _Pattern(
        position=position,
        regex=regex,
        shortest=shortest,
        longest=longest if bounded else None,
        needles=tuple(needles),
        first=_first(items[1:])
        if position == "BOF" and items[:1] == [(_PARSER.AT, _PARSER.AT_BEGINNING_STRING)]
        else None,
    )


def _scan_of(position: str, literal: bytes | None, window: int | None) -> int:
    """Which pass finds a pattern's literal (:data:`SCANS`): the one over the fewest bytes that
    holds its window; -1 for none (``bytes.find`` in its window). A pass lists every occurrence
    of its literals, so a literal of one repeated byte (``\\x00\\x00\\x00\\x00``), which can
    occur at most places of a file, has none, and one of less than 4 bytes only the shortest."""
    if literal is None or len(set(literal)) < 2:
        return -1
    eof = position == "EOF"
    for number, (in_tail, limit) in enumerate(SCANS):
        if in_tail != eof or (len(literal) < 4 and limit != SCANS[0][1]):
            continue
        if limit is None or (window is not None and window <= limit):
            return number
    return -1


def _any_repeat(items: list[Any], flags: int) -> bool:
    """Whether ``items`` is one greedy repeat of ``.`` matching any byte (DOTALL)."""
    if len(items) != 1 or not flags & re.DOTALL:
        return False
    op, value = items[0]
    return bool(op == _PARSER.MAX_REPEAT and list(value[2]) == [(_PARSER.ANY, None)])


#: The passes over each file: (in the tail, over how many of its first or last bytes; None:
#: the whole head or tail), each finding the literals whose window (from the start of the head,
#: or to the end of the tail) it holds and no nearer pass does (:func:`_scan_of`).
SCANS: tuple[tuple[bool, int | None], ...] = (
    (False, 512),
    (False, 4096),
    (False, None),
    (True, 512),
    (True, 4096),
    (True, None),
)


_WHOLE_HEAD = SCANS.index((False, None))
_WHOLE_TAIL = SCANS.index((True, None))

#: The most literals a pass compiles to a DFA (see :class:`_Literals`).
_DFA_LITERALS = 256


class _Vectorised:
    """Every occurrence of a few literals in a long buffer, by Hyperscan (SIMD): the whole
    head's pass over 128 KiB took 0.29 ms with Aho-Corasick's DFA (one table look-up a byte,
    whatever the literals) and takes 0.06 ms here, on the a3m corpus, with the same
    occurrences (the tests compare the two engines). Each literal is a pattern of ``\\xHH``
    escapes (its bytes, NUL included, as they are); a match's end less the literal's length
    is where it starts. A scratch space is per scan at a time (Hyperscan's rule): kept in a
    queue, taken by a scan and given back, one made when none is free."""

    def __init__(self, literals: list[bytes]) -> None:
        assert hyperscan is not None
        self.lengths = [len(literal) for literal in literals]
        self.database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self.database.compile(
            expressions=[b"".join(b"\\x%02x" % byte for byte in lit) for lit in literals],
            ids=list(range(len(literals))),
            elements=len(literals),
            flags=[0] * len(literals),
        )
        self._scratches: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def find(self, buffer: bytes) -> list[tuple[int, int]]:
        """(literal number, start) of every occurrence in ``buffer``."""
        found: list[tuple[int, int]] = []
        lengths = self.lengths

        def matched(number: int, start: int, end: int, flags: int, context: object) -> None:
            found.append((number, end - lengths[number]))

        try:
            scratch = self._scratches.get_nowait()
        except queue.Empty:
            scratch = hyperscan.Scratch(self.database)
        try:
            self.database.scan(buffer, match_event_handler=matched, scratch=scratch)
        finally:
            self._scratches.put(scratch)
        return found


class _Literals:
    """Literals found in one pass over a buffer (Aho-Corasick, or Hyperscan for a long pass:
    ``vectorised``; every occurrence either way)."""

    def __init__(self, literals: set[bytes], *, vectorised: bool = False) -> None:
        self.literals = sorted(literals)
        #: The same, to ask whether one is of this pass; and the longest's length.
        self.members = frozenset(literals)
        self.longest = max(map(len, literals), default=0)
        self.vectorised = (
            _Vectorised(self.literals) if vectorised and VECTORISED and self.literals else None
        )
        # A DFA is the fastest, but its size grows with the literals: for the 1,220 literals of
        # the first 512 bytes it takes 11 MiB in every process to save half a microsecond a
        # file over the contiguous NFA (1 MiB). The small sets, scanned over up to 128 KiB, keep
        # the DFA (twice as fast there, and small). None when Hyperscan does this pass.
        implementation = (
            ahocorasick_rs.Implementation.DFA
            if len(self.literals) <= _DFA_LITERALS
            else ahocorasick_rs.Implementation.ContiguousNFA
        )
        self.automaton = (
            ahocorasick_rs.BytesAhoCorasick(self.literals, implementation=implementation)
            if self.literals and self.vectorised is None
            else None
        )

    def starts(self, buffer: bytes, offset: int = 0) -> dict[bytes, list[int]]:
        """Where each literal occurs in ``buffer`` (plus ``offset``)."""
        found: dict[bytes, list[int]] = {}
        if self.vectorised is not None:
            for number, start in self.vectorised.find(buffer):
                found.setdefault(self.literals[number], []).append(start + offset)
        elif self.automaton is not None:
            matches = self.automaton.find_matches_as_indexes(buffer, overlapping=True)
            for number, start, _ in matches:
                found.setdefault(self.literals[number], []).append(start + offset)
        return found


class _Scan:
    """One file's head and tail, and what was found of the literals in them."""

    def __init__(
        self,
        head: bytes,
        tail: bytes,
        scans: tuple[_Literals, ...],
        joint: _Literals,
        size: int | None = None,
    ) -> None:
        self.buffers = (head, tail)
        self.found: dict[tuple[bool, bytes, int, int], bool] = {}
        self.starts: list[dict[bytes, list[int]]] = []
        # Where the tail begins in the file: when that is inside the head (a file of less than
        # twice BUFFER), the bytes they share are scanned once, for both (:meth:`_whole`).
        tail_at = None if size is None else size - len(tail)
        shared = tail_at is not None and tail_at < len(head)
        for (eof, limit), literals in zip(SCANS, scans, strict=True):
            buffer = tail if eof else head
            if limit is None:
                if shared:
                    self.starts.append({})  # filled by _whole, below
                else:
                    self.starts.append(literals.starts(buffer))
            elif eof:
                offset = max(0, len(buffer) - limit)
                self.starts.append(literals.starts(buffer[offset:], offset))
            else:
                self.starts.append(literals.starts(buffer[:limit]))
        if shared and tail_at is not None:
            self._whole(head, tail, tail_at, scans, joint)

    def _whole(
        self, head: bytes, tail: bytes, tail_at: int, scans: tuple[_Literals, ...], joint: _Literals
    ) -> None:
        """The passes over the whole head and the whole tail when they overlap: the head once
        with both passes' literals; of the tail, only what lies beyond the head (from where a
        tail literal could still run past the head's end). Every occurrence is found once."""
        in_tail = scans[_WHOLE_TAIL].members
        in_head = scans[_WHOLE_HEAD].members
        # A tail literal starting before ``cut`` ends inside the head: the head's pass found it.
        cut = max(tail_at, len(head) - max(scans[_WHOLE_TAIL].longest, 1) + 1)
        head_found: dict[bytes, list[int]] = {}
        tail_found: dict[bytes, list[int]] = {}
        for literal, starts in joint.starts(head).items():
            if literal in in_head:
                head_found[literal] = starts
            if literal in in_tail:
                inside = [at - tail_at for at in starts if tail_at <= at < cut]
                if inside:
                    tail_found[literal] = inside
        rest = scans[_WHOLE_TAIL].starts(tail[cut - tail_at :], cut - tail_at)
        for literal, starts in rest.items():
            tail_found.setdefault(literal, []).extend(starts)
        self.starts[_WHOLE_HEAD] = head_found
        self.starts[_WHOLE_TAIL] = tail_found

    def has(self, eof: bool, literal: bytes, start: int, end: int, scan: int) -> bool:
        """Whether ``literal`` lies within ``buffer[start:end]`` (the tail's when ``eof``)."""
        key = (eof, literal, start, end)
        present = self.found.get(key)
        if present is not None:
            return present
        if scan >= 0:
            last = end - len(literal)
            present = any(start <= at <= last for at in self.starts[scan].get(literal, ()))
        else:
            present = self.buffers[eof].find(literal, start, end) >= 0
        self.found[key] = present
        return present


def _runs(items: list[Any], position: str, ends: bool) -> list[tuple[bytes, int | None]]:
    """The runs of literal bytes in the pattern's top-level sequence (each of its items is in
    every match), two bytes or more, with their reach: for a BOF pattern, the furthest from the
    start a run can end (the widest of what comes before, plus its length); for an EOF pattern
    anchored at the end, the furthest from the end it can start; None otherwise."""
    runs: list[tuple[int, int]] = []  # (first item, last item + 1)
    index = 0
    while index < len(items):
        if items[index][0] != _PARSER.LITERAL:
            index += 1
            continue
        first = index
        while index < len(items) and items[index][0] == _PARSER.LITERAL:
            index += 1
        if index - first >= 2:
            runs.append((first, index))

    def width(part: list[Any]) -> int | None:
        widest = int(_PARSER.SubPattern(_PARSER.State(), part).getwidth()[1])
        return widest if widest < _UNBOUNDED else None

    found: list[tuple[bytes, int | None]] = []
    for first, last in runs:
        run = bytes(value for _, value in items[first:last])
        reach: int | None = None
        if position == "BOF":
            before = width(items[:first])
            reach = None if before is None else before + len(run)
        elif position == "EOF" and ends:
            after = width(items[last:])
            reach = None if after is None else after + len(run)
        found.append((run, reach))
    return found


def _literal(runs: list[tuple[bytes, int | None]]) -> tuple[bytes, int | None]:
    """The pattern's literal among its runs: one with a reach (the nearest), else the longest."""
    reached = [run for run in runs if run[1] is not None]
    if reached:
        return min(reached, key=lambda run: run[1] or 0)
    return max(runs, key=lambda run: len(run[0]))


def _first(items: list[Any]) -> frozenset[int] | None:
    """The bytes a sequence of parsed items can start with; None when any can, or unsure."""
    if not items:
        return None
    op, value = items[0]
    if op == _PARSER.LITERAL:
        return frozenset({value})
    if op == _PARSER.IN:
        found: set[int] = set()
        for kind, item in value:
            if kind == _PARSER.LITERAL:
                found.add(item)
            elif kind == _PARSER.RANGE:
                found.update(range(item[0], item[1] + 1))
            elif kind == _PARSER.NEGATE:
                return None  # rare: let the regex decide
            else:
                return None
        return frozenset(found)
    if op == _PARSER.BRANCH:
        union: set[int] = set()
        for branch in value[1]:
            part = _first(list(branch))
            if part is None:
                return None
            union |= part
        return frozenset(union)
    if op in (_PARSER.MAX_REPEAT, _PARSER.MIN_REPEAT) and value[0] >= 1:
        return _first(list(value[2]))
    if op == _PARSER.SUBPATTERN:
        return _first(list(value[3]))
    return None


def _text(element: Any, name: str) -> str | None:
    found = element.find(name)
    if found is None or found.text is None:
        return None
    return str(found.text).strip() or None


def _load(*, vectorised: bool = VECTORISED) -> Identifier:
    """fido's signature files, as ``fido`` itself chooses them (its ``versions.xml``): the
    PRONOM file, then fido's extensions (a format of the second replaces the first's, in its
    place, as ``Fido.process_format_element`` does).

    Read here, streamed, rather than through ``fido.Fido``: fido's loader keeps the whole
    ElementTree of the 3.6 MB file (about 20 MiB that Python never gives back to the system,
    in every server process), and importing ``fido.fido`` brings ``requests`` along (18 MiB).
    Only what matching needs is kept.
    """
    conf = _fido_conf()
    versions = seda.safe_parse((conf / "versions.xml").read_bytes())
    pronom_version = versions.findtext("pronomVersion") or ""
    files = [versions.findtext("pronomSignature"), versions.findtext("fidoExtensionSignature")]
    formats: dict[str, _Format] = {}  # in the files' order; a replacement keeps its place
    for name in files:
        if not name:
            continue
        data = (conf / Path(name).name).read_bytes()
        for element in seda.iter_elements(data, "format", max_bytes=64 * 1024 * 1024):
            parent = element.getparent()
            if parent is None or parent.getparent() is not None:
                continue  # fido reads the root's ``format`` children only
            puid = _text(element, "puid")
            if puid is None:
                continue
            formats[puid] = _format(puid, element)
    in_container = _container_puids(conf / (versions.findtext("pronomContainerSignature") or ""))
    return Identifier(list(formats.values()), pronom_version, in_container, vectorised)


def _fido_conf() -> Path:
    """fido's ``conf`` directory, found without importing fido (see :func:`_load`)."""
    spec = importlib.util.find_spec("fido")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the opf-fido package is not installed (its signature files are)")
    return Path(next(iter(spec.submodule_search_locations))) / "conf"


def _format(puid: str, element: Any) -> _Format:
    signatures = []
    for signature in element.findall("signature"):
        patterns = []
        for pattern in signature.findall("pattern"):
            position = _text(pattern, "position")
            regex = pattern.findtext("regex")
            if position is None or regex is None:
                continue
            try:
                patterns.append(_compile(position, regex.encode("utf-8")))
            except re.error:
                log.warning("identify.bad_pattern puid=%s", puid)
                patterns = []
                break
        if patterns:
            signatures.append(tuple(sorted(patterns, key=lambda p: p.cost)))
    return _Format(
        puid=puid,
        name=_text(element, "name"),
        version=_text(element, "version"),
        mime_types=tuple(str(m.text).strip().lower() for m in element.findall("mime") if m.text),
        signatures=tuple(signatures),
        priority_over=frozenset(
            str(e.text).strip() for e in element.findall("has_priority_over") if e.text
        ),
    )


def _container_puids(path: Path) -> dict[str, frozenset[str]]:
    """PRONOM's container signature file: the PUIDs identified inside each container type."""
    root = seda.safe_parse(path.read_bytes())
    kinds: dict[str, str] = {}
    for element in root.iter("{*}ContainerSignature", "ContainerSignature"):
        kinds[element.get("Id", "")] = element.get("ContainerType", "")
    found: dict[str, set[str]] = {}
    for element in root.iter("{*}FileFormatMapping", "FileFormatMapping"):
        kind = kinds.get(element.get("signatureId", ""))
        puid = element.get("Puid")
        if kind and puid:
            found.setdefault(kind, set()).add(puid)
    return {kind: frozenset(puids) for kind, puids in found.items()}


_loaded: Identifier | None = None
_loading = threading.Lock()


def identifier() -> Identifier:
    """The process's identifier, loaded on first use (about 0.3 s), by one thread.

    Not ``functools.cache``: the first deposits of a new process arrive together (8 clients),
    and each of their threads ran its own load at once, the eight sharing the GIL — 20 to 25
    CPU-seconds at the start of every ``bench_transfers`` run (py-spy, session 13), and the
    first replies held as long. The others wait for the one load.
    """
    global _loaded
    if _loaded is None:
        with _loading:
            if _loaded is None:
                _loaded = _load()
    return _loaded


def identify(head: bytes, tail: bytes, size: int | None = None) -> Identification | None:
    """The PRONOM format of a file from its first and last :data:`BUFFER` bytes (and its
    size, when known: see :meth:`Identifier.identify`)."""
    return identifier().identify(head, tail, size)


# --- declared against measured -----------------------------------------------------------------


def normal_mime(mime: str | None) -> str | None:
    """A MIME type without its parameters, lower case, under its usual name."""
    if not mime:
        return None
    base = mime.split(";", 1)[0].strip().lower()
    return MIME_SYNONYMS.get(base, base) or None


def _xmlish(mime: str) -> bool:
    return mime in ("application/xml", "text/xml") or mime.endswith("+xml")


def contradiction(
    found: Identification | None,
    *,
    declared_puid: str | None,
    declared_mime: str | None,
    ident: Identifier | None = None,
) -> str | None:
    """Why a declaration contradicts the content (None when it does not).

    Only a positive identification contradicts: content no signature recognises (plain text,
    a format PRONOM does not know) is never held against its declaration. Benign differences
    (docs/ingest.md, "Format identification"):

    - another version of the same format (two PUIDs sharing a MIME type in PRONOM: fmt/18
      and fmt/19, two PDF versions; PDF/A and PDF);
    - a format PRONOM identifies inside the container found (a ``.docx`` in a ZIP);
    - MIME synonyms (:data:`MIME_SYNONYMS`), ``application/octet-stream``, and XML: any
      ``…+xml`` type is XML.
    """
    if found is None:
        return None
    ident = ident or identifier()
    measured_mimes = {m for m in (normal_mime(x) for x in found.mime_types) if m}
    candidates = set(found.candidates) | {found.puid}
    container = found.container
    if declared_puid:
        puid = declared_puid.strip()
        declared_mimes = {m for m in (normal_mime(x) for x in ident.mime_types_of(puid)) if m}
        same = (
            puid in candidates
            or bool(declared_mimes & measured_mimes)
            or (container is not None and puid in ident.in_container.get(container, ()))
            # A PUID this version of PRONOM does not know cannot be judged.
            or puid not in ident.by_puid
        )
        if not same:
            return f"declared FormatId {puid}, the content is {_describe(found)}"
    mime = normal_mime(declared_mime)
    if mime and mime != UNKNOWN_MIME:
        same = (
            mime in measured_mimes
            or not measured_mimes  # PRONOM gives no MIME type for the format found
            or (_xmlish(mime) and any(_xmlish(m) for m in measured_mimes))
            or (container is not None and mime in ident.container_mimes.get(container, ()))
        )
        if not same:
            return f"declared MimeType {declared_mime}, the content is {_describe(found)}"
    return None


def _describe(found: Identification) -> str:
    mime = f", {found.mime_type}" if found.mime_type else ""
    name = f" ({found.name}{mime})" if found.name else ""
    return f"{found.puid}{name}"
