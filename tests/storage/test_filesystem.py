"""What only the local WORM directory does: files, modes, crash leftovers."""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sae.storage.errors import ObjectExists, RetentionActive
from sae.storage.filesystem import LOCK_XATTR, FilesystemOffer


def test_files_are_read_only_and_carry_their_lock(tmp_path: Path) -> None:
    offer = FilesystemOffer("local", tmp_path)
    until = datetime.now(UTC) + timedelta(days=1)
    stored = offer.put("objects/a", io.BytesIO(b"abc"), retain_until=until)
    data = tmp_path / "data" / "objects" / "a"
    assert stat.S_IMODE(data.stat().st_mode) == 0o444
    # The first lock record is the data file's attribute: no second file.
    record = json.loads(os.getxattr(data, LOCK_XATTR))
    assert stored.sha512 is not None
    assert record["sha512"] == stored.sha512
    assert record["retain_until"] == until.isoformat()
    assert (record["lock_mode"], record["legal_hold"], record["size"]) == ("COMPLIANCE", False, 3)
    assert not (tmp_path / "meta" / "objects").exists()
    with pytest.raises(RetentionActive):
        offer.delete("objects/a")


def test_later_lock_changes_go_to_a_sidecar_that_overrides_the_attribute(tmp_path: Path) -> None:
    offer = FilesystemOffer("local", tmp_path)
    offer.put("objects/a", io.BytesIO(b"abc"), retain_until=datetime.now(UTC))
    later = datetime.now(UTC) + timedelta(days=10)
    offer.extend_retention("objects/a", later)
    offer.set_legal_hold("objects/a", True)
    sidecar = json.loads((tmp_path / "meta" / "objects" / "a.json").read_text())
    assert (sidecar["retain_until"], sidecar["legal_hold"]) == (later.isoformat(), True)
    head = offer.head("objects/a")
    assert head is not None
    assert (head.retain_until, head.legal_hold) == (later, True)
    # The attribute still holds the first record (set once, on a read-only file).
    first = json.loads(os.getxattr(tmp_path / "data" / "objects" / "a", LOCK_XATTR))
    assert first["retain_until"] != later.isoformat()
    with pytest.raises(RetentionActive, match="legal hold"):
        offer.delete("objects/a")


def test_an_offer_written_by_an_earlier_version_is_read(tmp_path: Path) -> None:
    """Before 2026-12-06 every lock record was a sidecar, the data file had no attribute."""
    offer = FilesystemOffer("local", tmp_path)
    offer.check()
    (tmp_path / "data" / "objects").mkdir()
    (tmp_path / "meta" / "objects").mkdir()
    (tmp_path / "data" / "objects" / "old").write_bytes(b"old bytes")
    record = {
        "retain_until": "2100-01-01T00:00:00+00:00",
        "lock_mode": "COMPLIANCE",
        "legal_hold": False,
        "stored_at": "2026-11-01T10:00:00+00:00",
        "sha512": "ab" * 64,
        "size": 9,
    }
    (tmp_path / "meta" / "objects" / "old.json").write_text(json.dumps(record, sort_keys=True))
    head = offer.head("objects/old")
    assert head is not None
    assert (head.sha512, head.size, head.lock_mode) == ("ab" * 64, 9, "COMPLIANCE")
    assert head.retain_until == datetime(2100, 1, 1, tzinfo=UTC)
    with pytest.raises(RetentionActive):
        offer.delete("objects/old")
    offer.extend_retention("objects/old", datetime(2101, 1, 1, tzinfo=UTC))
    head = offer.head("objects/old")
    assert head is not None
    assert head.retain_until == datetime(2101, 1, 1, tzinfo=UTC)


def test_a_repair_keeps_the_lock_of_the_file_it_replaces(tmp_path: Path) -> None:
    import hashlib

    offer = FilesystemOffer("local", tmp_path)
    far = datetime(2090, 1, 1, tzinfo=UTC)
    offer.put("objects/a", io.BytesIO(b"abc"), retain_until=far)
    data = tmp_path / "data" / "objects" / "a"
    data.chmod(0o644)
    data.write_bytes(b"abd")  # damaged behind SAE's back: the attribute stays on the inode
    stored = offer.replace_damaged(
        "objects/a",
        io.BytesIO(b"abc"),
        expected_sha512=hashlib.sha512(b"abc").hexdigest(),
        retain_until=datetime.now(UTC) + timedelta(days=1),
    )
    assert stored.retain_until == far  # the stronger lock, read before the file was replaced
    head = offer.head("objects/a")
    assert head is not None
    assert head.retain_until == far
    assert data.read_bytes() == b"abc"


_NOBODY = 65534


def _as_nobody(root: Path) -> None:
    """What the forked child checks, as ``nobody``."""
    offer = FilesystemOffer("local", root)
    until = datetime.now(UTC) + timedelta(days=1)
    seen: list[str] = []

    class Watching(io.BytesIO):
        """What the key's directory holds while the bytes are written: no name yet (linkat
        through /proc/self/fd needs no privilege)."""

        def read(self, size: int | None = -1) -> bytes:
            seen.extend(os.listdir(root / "data" / "objects"))
            return super().read(size)

    offer.put("objects/a", Watching(b"abc"), retain_until=until)
    assert seen == [], seen
    data = root / "data" / "objects" / "a"
    assert stat.S_IMODE(data.stat().st_mode) == 0o444, oct(data.stat().st_mode)
    assert json.loads(os.getxattr(data, LOCK_XATTR))["retain_until"] == until.isoformat()
    with pytest.raises(PermissionError):
        data.open("ab")
    offer.extend_retention("objects/a", until + timedelta(days=1))
    head = offer.head("objects/a")
    assert head is not None
    assert head.retain_until == until + timedelta(days=1)
    with pytest.raises(RetentionActive):
        offer.delete("objects/a")


def test_the_lock_attribute_is_set_by_a_process_that_is_not_root(
    request: pytest.FixtureRequest,
) -> None:
    """A ``user.`` attribute may only be set on a file its process may write: the temporary
    file is made read-only once its lock is set. Checked in a child that became ``nobody``
    (root ignores modes)."""
    import shutil
    import tempfile
    import traceback

    if os.geteuid() != 0:
        pytest.skip("switching to another user needs root; as this user, every test is non-root")
    # pytest's own directories are root's alone (0700): nobody's offer lives beside them
    parent = Path(tempfile.mkdtemp(prefix="sae-nobody-"))
    request.addfinalizer(lambda: shutil.rmtree(parent, ignore_errors=True))
    parent.chmod(0o755)
    root = parent / "offer"
    root.mkdir()
    os.chown(root, _NOBODY, _NOBODY)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(_NOBODY)
            os.setuid(_NOBODY)
            _as_nobody(root)
            code = 0
        except BaseException:
            os.write(write_end, traceback.format_exc().encode())
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as report:
        failure = report.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, failure


@pytest.fixture
def ramfs(tmp_path: Path) -> Iterator[Path]:
    """A real filesystem that keeps no extended attributes (ramfs: ``EOPNOTSUPP``)."""
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a ramfs needs root")
    mount = tmp_path / "ramfs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "ramfs", "ramfs", str(mount)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a ramfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_without_extended_attributes_the_first_lock_is_a_sidecar(
    ramfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = SyncCalls(monkeypatch)
    offer = FilesystemOffer("local", ramfs)
    until = datetime.now(UTC) + timedelta(days=1)
    stored = offer.put("objects/a", io.BytesIO(b"abc"), retain_until=until)
    data, meta = ramfs / "data" / "objects", ramfs / "meta" / "objects"
    assert stat.S_IMODE((data / "a").stat().st_mode) == 0o444
    record = json.loads((meta / "a.json").read_text())
    assert (record["sha512"], record["retain_until"]) == (stored.sha512, until.isoformat())
    synced = [Path(p) for p in calls.fsynced]
    assert synced[1:] == [data, meta / "a.json", meta]
    head = offer.head("objects/a")
    assert head is not None
    assert (head.sha512, head.retain_until) == (stored.sha512, until)
    with pytest.raises(RetentionActive):
        offer.delete("objects/a")
    offer.put("objects/b", io.BytesIO(b"b"), retain_until=None)  # asked once per offer
    assert (meta / "b.json").exists()


def test_a_name_taken_between_check_and_publish_is_not_overwritten(tmp_path: Path) -> None:
    offer = FilesystemOffer("local", tmp_path)

    class Racing(io.BytesIO):
        """Another writer publishes the same key while we stream ours."""

        def read(self, size: int | None = -1) -> bytes:
            chunk = super().read(size)
            target = tmp_path / "data" / "objects" / "race"
            if chunk and not target.exists():
                target.write_bytes(b"theirs")
            return chunk

    with pytest.raises(ObjectExists):
        offer.put("objects/race", Racing(b"ours"), retain_until=None)
    assert (tmp_path / "data" / "objects" / "race").read_bytes() == b"theirs"
    assert [p.name for p in (tmp_path / "data" / "objects").iterdir()] == ["race"]


def test_crash_leftovers(tmp_path: Path) -> None:
    offer = FilesystemOffer("local", tmp_path)
    offer.check()
    objects = tmp_path / "data" / "objects"
    objects.mkdir()
    # a temporary file from a write that never finished: invisible
    (objects / ".x.abc.tmp").write_bytes(b"partial")
    # published but the sidecar never written: visible, unlocked, removable
    (objects / "unlocked").write_bytes(b"never acknowledged")
    assert list(offer.list_keys()) == ["objects/unlocked"]
    head = offer.head("objects/unlocked")
    assert head is not None
    assert head.retain_until is None
    offer.delete("objects/unlocked")
    until = datetime.now(UTC) + timedelta(days=3)

    def extended_and_locked(key: str) -> None:
        offer.extend_retention(key, until)  # locked from now on, its record (re)written
        head = offer.head(key)
        assert head is not None
        assert head.retain_until == until
        with pytest.raises(RetentionActive):
            offer.delete(key)

    # the same, but someone extends it: it becomes locked until that date
    (objects / "late").write_bytes(b"late")
    extended_and_locked("objects/late")
    # its sidecar created but not yet written (killed between the two): the same as none
    (objects / "empty").write_bytes(b"killed before its lock was written")
    (tmp_path / "meta" / "objects" / "empty.json").write_bytes(b"")
    head = offer.head("objects/empty")
    assert head is not None
    assert (head.retain_until, head.sha512) == (None, None)
    extended_and_locked("objects/empty")
    # ... or, unlocked, removed with its empty record
    (objects / "gone").write_bytes(b"never acknowledged")
    (tmp_path / "meta" / "objects" / "gone.json").write_bytes(b"")
    offer.delete("objects/gone")
    assert not (tmp_path / "meta" / "objects" / "gone.json").exists()
    assert list(offer.list_keys()) == ["objects/empty", "objects/late"]


def test_a_put_killed_before_publishing_leaves_nothing_named(tmp_path: Path) -> None:
    """The process dies (SIGKILL) while the bytes are being written: the file had no name yet,
    so the kernel frees it and the offer shows nothing, not even a temporary name."""
    import signal

    offer = FilesystemOffer("local", tmp_path)
    offer.put("objects/first", io.BytesIO(b"first"), retain_until=None)

    class Dying(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            if self.tell():
                os.kill(os.getpid(), signal.SIGKILL)
            return super().read(size)

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child dies in its put
        try:
            offer.put("objects/killed", Dying(b"x" * 100_000), retain_until=None)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == -signal.SIGKILL
    assert sorted(os.listdir(tmp_path / "data" / "objects")) == ["first"]
    assert list(offer.list_keys()) == ["objects/first"]


def test_where_files_cannot_be_written_without_a_name_a_temporary_name_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filesystem without ``O_TMPFILE`` (an NFS mount, an old kernel): asked once, then every
    put goes through a temporary name in the key's directory, published with link()."""
    import errno

    from sae.storage import filesystem

    asked: list[Path] = []

    def refused(directory: Path, mode: int) -> int:
        asked.append(directory)
        raise OSError(errno.EOPNOTSUPP, "Operation not supported", str(directory))

    monkeypatch.setattr(filesystem, "_create_anonymous", refused)
    calls = SyncCalls(monkeypatch)
    offer = FilesystemOffer("local", tmp_path)
    offer.put("objects/a", io.BytesIO(b"abc"), retain_until=None)
    offer.put("objects/b", io.BytesIO(b"def"), retain_until=None)
    data = tmp_path / "data" / "objects"
    assert asked == [data]
    synced = [Path(p) for p in calls.fsynced]
    assert (synced[0].parent, synced[0].name.split(".")[1]) == (data, "a")
    assert sorted(os.listdir(data)) == ["a", "b"]
    assert os.getxattr(data / "a", LOCK_XATTR)
    with pytest.raises(ObjectExists):
        offer.put("objects/a", io.BytesIO(b"again"), retain_until=None)


def test_a_sidecar_left_by_an_interrupted_removal_is_dropped(tmp_path: Path) -> None:
    offer = FilesystemOffer("local", tmp_path)
    offer.check()
    meta = tmp_path / "meta" / "objects"
    meta.mkdir()
    # an earlier version's removal that stopped between the bytes and their record left the
    # record behind: it must not stand for the lock of a new object of the same key
    (meta / "k.json").write_text('{"retain_until": "2999-01-01T00:00:00+00:00"}')
    stored = offer.put("objects/k", io.BytesIO(b"new"), retain_until=None)
    head = offer.head("objects/k")
    assert head is not None
    assert (head.sha512, head.size, head.stored_at) == (stored.sha512, 3, stored.stored_at)
    assert list(meta.iterdir()) == []
    assert [p.name for p in (tmp_path / "data" / "objects").iterdir()] == ["k"]


def test_unwritable_offer_is_unavailable(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root ignores permissions; a file where the directory should be fails for everyone
        (tmp_path / "blocked").write_bytes(b"")
        offer = FilesystemOffer("local", tmp_path / "blocked")
    else:
        tmp_path.chmod(0o500)
        offer = FilesystemOffer("local", tmp_path / "sub")
    from sae.storage.errors import OfferUnavailable

    with pytest.raises(OfferUnavailable, match="'local'"):
        offer.check()
    with pytest.raises(OfferUnavailable):
        offer.put("objects/x", io.BytesIO(b"x"), retain_until=None)


# --- batches: one durability barrier per transfer -----------------------------------------------


class SyncCalls:
    """Records the paths the offer fsyncs (and can make fsync fail, as a disk would: EIO)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, fail: bool = False) -> None:
        from sae.storage import filesystem

        self.fsynced: list[str] = []
        self.fail = fail
        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            self.fsynced.append(os.readlink(f"/proc/self/fd/{fd}"))
            if self.fail:
                raise OSError(5, "Input/output error")
            real_fsync(fd)

        monkeypatch.setattr(filesystem.os, "fsync", fsync)


def test_outside_a_batch_every_put_is_durable_when_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = SyncCalls(monkeypatch)
    offer = FilesystemOffer("local", tmp_path)
    offer.put("objects/a", io.BytesIO(b"abc"), retain_until=None)
    data = tmp_path / "data" / "objects"
    # the bytes (before they have a name, with their lock attribute), then the directory
    synced = [Path(p) for p in calls.fsynced]
    assert (synced[0].parent, synced[0].name.endswith(" (deleted)")) == (data, True)
    assert synced[1:] == [data]


def test_a_batch_makes_its_writes_durable_at_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = SyncCalls(monkeypatch)
    offer = FilesystemOffer("local", tmp_path)
    offer.check()
    with offer.batch():
        for i in range(3):
            offer.put(f"objects/{i}", io.BytesIO(b"x" * i), retain_until=None)
        with offer.batch():  # a nested block joins the outer one
            offer.put("objects/n", io.BytesIO(b"n"), retain_until=None)
        offer.put("objects/gone", io.BytesIO(b"c"), retain_until=datetime.now(UTC))
        offer.delete("objects/gone")  # a refused transfer's copy: nothing left to sync
        # Written, verified and readable already; only durability waits (the deletion's own
        # directory sync is immediate).
        assert calls.fsynced == [str(tmp_path / "data" / "objects")]
        assert b"".join(offer.get("objects/2")) == b"xx"
    data = tmp_path / "data" / "objects"
    names = ["0", "1", "2", "n"]
    # every file, then its directory once
    assert calls.fsynced[-1:] == [str(data)]
    assert sorted(calls.fsynced[1:-1]) == sorted(str(data / n) for n in names)
    # Outside the block, puts are durable one by one again.
    calls.fsynced.clear()
    offer.put("objects/after", io.BytesIO(b"z"), retain_until=None)
    assert len(calls.fsynced) == 2


def test_a_batch_left_by_an_exception_syncs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = SyncCalls(monkeypatch)
    offer = FilesystemOffer("local", tmp_path)
    offer.check()

    def refused_transfer() -> None:
        with offer.batch():
            offer.put("objects/a", io.BytesIO(b"abc"), retain_until=None)
            raise RuntimeError("the transfer is refused")

    with pytest.raises(RuntimeError):
        refused_transfer()
    assert calls.fsynced == []


def test_a_failed_sync_makes_the_offer_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sae.storage.errors import OfferUnavailable

    offer = FilesystemOffer("local", tmp_path)
    offer.check()
    calls = SyncCalls(monkeypatch)

    def transfer() -> None:
        with offer.batch():
            offer.put("objects/a", io.BytesIO(b"abc"), retain_until=None)
            calls.fail = True  # the disk reports a write-back error when asked to sync

    with pytest.raises(OfferUnavailable, match="Input/output error"):
        transfer()


def test_a_sync_failing_on_one_file_among_many_fails_the_batch_after_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The files of a batch are fsynced by several threads: one failure still fails the batch,
    once every other fsync has returned, and the directories are not synced after it."""
    from sae.storage import filesystem
    from sae.storage.errors import OfferUnavailable

    offer = FilesystemOffer("local", tmp_path)
    offer.check()
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if path.endswith("/objects/f7"):
            raise OSError(5, "Input/output error")
        synced.append(path)
        real_fsync(fd)

    monkeypatch.setattr(filesystem.os, "fsync", fsync)
    with pytest.raises(OfferUnavailable, match="Input/output error"):  # noqa: PT012
        with offer.batch():
            for i in range(20):
                offer.put(f"objects/f{i}", io.BytesIO(b"f" * i), retain_until=None)
            assert synced == []
    data = tmp_path / "data" / "objects"
    expected = {str(data / f"f{i}") for i in range(20) if i != 7}
    assert set(synced) == expected  # every other file, and no directory
    assert len(synced) == len(expected)


def test_worker_threads_write_into_the_batch_they_join(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    calls = SyncCalls(monkeypatch)
    offer = FilesystemOffer("local", tmp_path)
    offer.check()
    with offer.batch():
        handle = offer.current_batch()

        def worker(i: int) -> None:
            with offer.joined_batch(handle):
                offer.put(f"objects/w{i}", io.BytesIO(b"w"), retain_until=None)
            assert offer.current_batch() is None

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert calls.fsynced == []
    assert len(calls.fsynced) == 4 + 1  # each file (its lock on it), then the directory


def test_batches_of_two_threads_are_their_own(tmp_path: Path) -> None:
    import threading

    offer = FilesystemOffer("local", tmp_path)
    offer.check()
    seen: list[object] = []
    with offer.batch():
        thread = threading.Thread(target=lambda: seen.append(offer._current_batch()))
        thread.start()
        thread.join()
        assert offer._current_batch() is not None
    assert seen == [None]


# --- read-back: every byte re-read from the file, in step with the writer for large objects -----


@pytest.fixture(params=["small", "large"])
def payload(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """A small object (read back once written) or a large one (read back by a second thread
    following the writer; the threshold is lowered so that the test stays quick)."""
    from sae import fileio

    if request.param == "small":
        return os.urandom(100_000)
    monkeypatch.setattr(fileio, "TRAIL_AFTER", 1024 * 1024)
    return os.urandom(5 * 1024 * 1024 + 12345)


def _corrupt_reads(monkeypatch: pytest.MonkeyPatch, at: int, *, extra: bool = False) -> list[int]:
    """Make the offer's reads see a flipped byte at offset ``at`` (or, with ``extra``, one byte
    more than was written, as if something appended to the file)."""
    from sae.storage import filesystem

    real = os.pread
    calls: list[int] = []

    def pread(fd: int, n: int, offset: int) -> bytes:
        data = real(fd, n, offset)
        calls.append(offset)
        if extra:
            return data if data else (b"!" if offset == at else b"")
        if offset <= at < offset + len(data):
            i = at - offset
            data = data[:i] + bytes([data[i] ^ 1]) + data[i + 1 :]
        return data

    monkeypatch.setattr(filesystem.os, "pread", pread)
    return calls


def test_what_is_read_back_is_what_was_written(tmp_path: Path, payload: bytes) -> None:
    import hashlib

    offer = FilesystemOffer("local", tmp_path)
    stored = offer.put("objects/a", io.BytesIO(payload), retain_until=None)
    assert stored.sha512 == hashlib.sha512(payload).hexdigest()
    assert stored.size == len(payload)
    assert b"".join(offer.get("objects/a")) == payload


@pytest.mark.parametrize("extra", [False, True], ids=["flipped-byte", "longer-file"])
def test_a_read_back_that_differs_publishes_nothing(
    tmp_path: Path, payload: bytes, monkeypatch: pytest.MonkeyPatch, extra: bool
) -> None:
    from sae.storage.errors import IntegrityMismatch

    offer = FilesystemOffer("local", tmp_path)
    offer.check()
    at = len(payload) if extra else len(payload) - 7  # late in the file: read by the follower
    calls = _corrupt_reads(monkeypatch, at, extra=extra)
    with pytest.raises(IntegrityMismatch):
        offer.put("objects/a", io.BytesIO(payload), retain_until=None)
    assert calls, "the read-back went through the offer's own reads"
    assert list(offer.list_keys()) == []
    assert os.listdir(tmp_path / "data" / "objects") == []  # no temporary file left either
    assert offer.head("objects/a") is None


def test_a_known_digest_is_checked_on_the_read_back(tmp_path: Path, payload: bytes) -> None:
    import hashlib

    from sae.storage.errors import IntegrityMismatch

    offer = FilesystemOffer("local", tmp_path)
    right = hashlib.sha512(payload).hexdigest()
    stored = offer.put("objects/ok", io.BytesIO(payload), retain_until=None, expected_sha512=right)
    assert stored.sha512 == right
    wrong = hashlib.sha512(payload + b"x").hexdigest()
    with pytest.raises(IntegrityMismatch):
        offer.put("objects/ko", io.BytesIO(payload), retain_until=None, expected_sha512=wrong)
    assert list(offer.list_keys()) == ["objects/ok"]


def test_a_failing_source_leaves_no_temporary_file(tmp_path: Path, payload: bytes) -> None:
    offer = FilesystemOffer("local", tmp_path)
    offer.check()

    class Failing(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            if self.tell() > len(payload) // 2:
                raise OSError(5, "Input/output error")
            return super().read(size)

    from sae.storage.errors import OfferUnavailable

    with pytest.raises(OfferUnavailable):
        offer.put("objects/a", Failing(payload), retain_until=None)
    assert os.listdir(tmp_path / "data" / "objects") == []
