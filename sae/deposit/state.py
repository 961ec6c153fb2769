"""The local state of a deposit: which transfers the archive has acknowledged, file by file.

A deposit of thousands of scans takes hours and may be interrupted at any point (a closed
laptop, a lost network, Ctrl-C, a killed process). The state file, next to the sheet by
default, records each acknowledged transfer as soon as its answer comes, written atomically
(a temporary file, fsync, rename, fsync of the folder): after a crash it holds either the state
before the transfer or the state after it, never half of one. Run again, ``sae deposit`` skips
the files it names.

It is the fast path, not the guarantee: a transfer acknowledged by the archive just before the
process died is not in it, and is sent again, under the same content-derived MessageIdentifier
(``build.message_identifier``), which the archive refuses as already archived; the runner then
counts it as done. So each file is archived exactly once whether or not the state survived.

Format ``sae-deposit-state/1``::

    {"format": "sae-deposit-state/1", "producer": "...", "target": "<server URL or 'local'>",
     "max_files": 500, "max_bytes": 2147483648,
     "transfers": {"<MessageIdentifier>": {"outcome": "accepted" | "already_archived",
                   "transfer_id": "...", "at": "<ISO time>", "files": [["<uri>", "<sha512>"]]}}}
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FORMAT = "sae-deposit-state/1"


class StateError(Exception):
    """The state file cannot be used (in French: a clerk reads it)."""


@dataclass
class DepositState:
    """What a deposit has had acknowledged so far; :meth:`record` saves it at once."""

    path: Path
    producer: str
    target: str
    max_files: int
    max_bytes: int
    transfers: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def open(
        cls, path: Path, *, producer: str, target: str, max_files: int, max_bytes: int
    ) -> DepositState:
        """The state at ``path``, or a new one (not written until the first transfer).

        A state left by another producer or another archive is refused: its files were not
        archived where this deposit goes. A state's batch sizes win over the options given, so
        that the batches sent again are cut as before and carry the same identifiers.
        """
        if not path.exists():
            return cls(path, producer, target, max_files, max_bytes)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StateError(f"fichier d'état illisible : {path} ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise StateError(f"{path} n'est pas un fichier d'état de sae deposit")
        if data.get("producer") != producer or data.get("target") != target:
            raise StateError(
                f"le fichier d'état {path} concerne le service {data.get('producer')} et "
                f"l'archive {data.get('target')} : indiquez un autre fichier avec --state"
            )
        return cls(
            path,
            producer,
            target,
            int(data.get("max_files") or max_files),
            int(data.get("max_bytes") or max_bytes),
            dict(data.get("transfers") or {}),
        )

    def done_files(self) -> set[tuple[str, str]]:
        """The (uri, sha512) of every file in an acknowledged transfer."""
        return {
            (str(uri), str(sha512))
            for transfer in self.transfers.values()
            for uri, sha512 in transfer.get("files", [])
        }

    def record(
        self, message_identifier: str, outcome: str, transfer_id: str | None, files: list[Any]
    ) -> None:
        """Add an acknowledged transfer and write the state atomically."""
        self.transfers[message_identifier] = {
            "outcome": outcome,
            "transfer_id": transfer_id,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "files": files,
        }
        self.save()

    def save(self) -> None:
        document = {
            "format": FORMAT,
            "producer": self.producer,
            "target": self.target,
            "max_files": self.max_files,
            "max_bytes": self.max_bytes,
            "transfers": self.transfers,
        }
        data = json.dumps(document, ensure_ascii=False, indent=1).encode("utf-8")
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        directory = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def default_path(sheet: Path) -> Path:
    """Where the state of a sheet's deposit lives unless ``--state`` says: beside the sheet."""
    return sheet.with_name(sheet.name + ".etat-depot.json")
