"""What only the local WORM directory does: files, modes, crash leftovers."""

from __future__ import annotations

import io
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sae.storage.errors import ObjectExists, RetentionActive
from sae.storage.filesystem import FilesystemOffer


def test_files_are_read_only_and_sidecar_records_the_lock(tmp_path: Path) -> None:
    offer = FilesystemOffer("local", tmp_path)
    until = datetime.now(UTC) + timedelta(days=1)
    stored = offer.put("objects/a", io.BytesIO(b"abc"), retain_until=until)
    mode = stat.S_IMODE((tmp_path / "data" / "objects" / "a").stat().st_mode)
    assert mode == 0o444
    meta = (tmp_path / "meta" / "objects" / "a.json").read_text()
    assert stored.sha512 is not None
    assert stored.sha512 in meta
    assert until.isoformat() in meta


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
    # the same, but someone extends it: it becomes locked until that date
    (objects / "late").write_bytes(b"late")
    until = datetime.now(UTC) + timedelta(days=3)
    offer.extend_retention("objects/late", until)
    head = offer.head("objects/late")
    assert head is not None
    assert head.retain_until == until
    with pytest.raises(RetentionActive):
        offer.delete("objects/late")


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
