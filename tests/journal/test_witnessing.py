"""Witnessing end to end: two real ``sae witness serve`` processes, quorum 2, a real archive.

Deposits are co-signed; the head's note, ``/health``, bundles (``sae verify``, ``verify.py``,
VERIFY.md's openssl steps) carry and check the cosignatures; an altered cosignature fails them
all; and the rewrite attack — a server administrator replacing the journal with another
history, re-signed with the archive's own note key — is refused by both witnesses (409/422),
journaled, and caught by ``sae journal verify``, while bundles issued before still verify.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from sae.config import Settings, load_settings
from sae.journal.bundle import VERIFY_MD, verify_bundle
from sae.journal.consistency import ConsistencyRefused, check_consistency
from sae.journal.errors import WitnessesConfigError
from sae.journal.models import Event, HeadCosignature
from sae.journal.note import Note, Verifier
from sae.journal.notekey import load_note_key
from sae.journal.witnessing import WITNESS_REFUSED, WitnessClient, parse_witnesses
from tests.conftest import TEST_RULES_CSV, XSD_DIR, Api, Database, openssl
from tests.sipfactory import build_zip, simple_sip

ORIGIN = "sae.test.example/journal"


def sae(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sae", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@dataclass
class WitnessProcess:
    """One ``sae witness serve`` process and what the archive needs to know of it."""

    name: str
    data: Path
    vkey: str
    process: subprocess.Popen[str] | None = None
    url: str = ""

    def start(self, port: int = 0) -> None:
        # Its output goes to a file: a pipe nobody reads would fill and block the witness.
        log = self.data.parent / f"{self.data.name}.log"
        with log.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sae", "witness", "serve", "--data", str(self.data)]
                + ["--host", "127.0.0.1", "--port", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                env={**os.environ, "COLUMNS": "500"},
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = re.search(r"listening on (http://[0-9.]+:\d+)", log.read_text())
            if found:
                self.url = found[1]
                return
            assert self.process.poll() is None, log.read_text()
            time.sleep(0.1)
        raise AssertionError(f"witness {self.name} did not start: {log.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def new_witness(tmp_path: Path, name: str, log_vkey: str) -> WitnessProcess:
    data = tmp_path / name.replace("/", "_")
    made = sae("witness", "init", "--data", str(data), "--name", name, env={"COLUMNS": "500"})
    assert made.returncode == 0, made.stdout + made.stderr
    vkey = made.stdout.strip().splitlines()[-1]
    trusted = sae("witness", "trust", "--data", str(data), "--origin", ORIGIN, "--vkey", log_vkey)
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    witness = WitnessProcess(name, data, vkey)
    witness.start()
    return witness


@dataclass
class Archive:
    api: Api
    settings: Settings
    witnesses: list[WitnessProcess]

    @property
    def runtime(self) -> Any:
        return self.api.runtime

    def witness_round(self) -> dict[str, str]:
        return WitnessClient(self.runtime.sessions, self.runtime.witnesses).round(force=True)

    def seal_and_witness(self) -> int:
        """Seal a head over everything and have both witnesses co-sign it; its size."""
        from sae.journal.sealing import seal_now

        head = seal_now(self.runtime.sessions, self.settings, wait=True)
        assert head is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self.witness_round()
            with self.runtime.sessions() as session:
                got = session.scalars(
                    select(HeadCosignature.witness).where(
                        HeadCosignature.tree_size == head.tree_size
                    )
                ).all()
            if len(got) == 2:
                return head.tree_size
            time.sleep(0.2)
        raise AssertionError(f"head {head.tree_size} not co-signed: {got}")

    def env(self) -> dict[str, str]:
        return {
            "SAE_DATA_DIR": str(self.settings.data_dir),
            "SAE_DATABASE_URL": self.settings.db_url,
            "SAE_WITNESSES_FILE": str(self.settings.witnesses_file),
            "SAE_ORIGIN": ORIGIN,
        }


def archive_settings(tmp_path: Path, database_url: str, witnesses_file: Path) -> Settings:
    xsd = XSD_DIR if (XSD_DIR / "2.2" / "seda-2.2-main.xsd").is_file() else None
    return load_settings(
        data_dir=tmp_path / "sae-data",
        database_url=database_url,
        seda_xsd_dir=xsd,
        origin=ORIGIN,
        witnesses_file=witnesses_file,
    )


@pytest.fixture
def archive(tmp_path: Path, database: Database) -> Iterator[Archive]:
    from fastapi.testclient import TestClient

    from sae.app import create_app

    database.reset()
    # The archive's note key first (created on first start): the witnesses must trust it.
    log_vkey = load_note_key(load_settings(data_dir=tmp_path / "sae-data", origin=ORIGIN)).vkey
    witnesses = [
        new_witness(tmp_path, "archives.departement.example/witness", log_vkey),
        new_witness(tmp_path, "commune-voisine.example/witness", log_vkey),
    ]
    try:
        file = tmp_path / "witnesses.yaml"
        file.write_text(
            json.dumps(
                {
                    "witnesses": [
                        {"name": w.name, "url": w.url, "vkey": w.vkey} for w in witnesses
                    ],
                    "quorum": 2,
                }
            )
        )
        settings = archive_settings(tmp_path, database.url, file)
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            api = Api(client, settings)
            api.load_rules(TEST_RULES_CSV)
            yield Archive(api, settings, witnesses)
    finally:
        for w in witnesses:
            w.stop()
        database.reset()


def deposit(archive: Archive, name: str) -> tuple[str, bytes]:
    spec = simple_sip(name)
    response = archive.api.deposit(build_zip(spec))
    assert response.status_code == 201, response.text
    return response.json()["objects"][0]["id"], spec.files[0].data


def proof(archive: Archive, object_id: str) -> bytes:
    auditor = archive.api.token("auditor")
    got = archive.api.client.get(
        f"/api/v1/objects/{object_id}/proof", headers=archive.api.auth(auditor)
    )
    assert got.status_code == 200, got.text
    return got.content


def unzip(data: bytes, directory: Path, content: bytes) -> Path:
    directory.mkdir(parents=True)
    zipfile.ZipFile(io.BytesIO(data)).extractall(directory)
    (directory / "object.pdf").write_bytes(content)
    return directory


def verify_py(directory: Path, *witness_vkeys: str) -> subprocess.CompletedProcess[str]:
    args = [a for v in witness_vkeys for a in ("--witness", v)]
    return subprocess.run(
        [sys.executable, "verify.py", ".", "--object", "object.pdf", *args],
        cwd=directory,
        capture_output=True,
        text=True,
    )


def openssl_steps(directory: Path) -> list[tuple[str, int, str]]:
    """VERIFY.md's section 5, run as an auditor would: the archive's signature (one shell, its
    commands share ``$ORIGIN``), then each step for each witness N of witnesses.json."""
    openssl()
    section = VERIFY_MD.split("## 5.")[1].split("## 6.")[0]
    commands = [ln[4:] for ln in section.replace("\\\n", "").splitlines() if ln.startswith("    ")]
    log_steps, witness_steps = commands[:4], commands[4:]
    assert len(witness_steps) == 3, commands
    doc = json.loads((directory / "witnesses.json").read_text())
    run = ["\n".join(log_steps)]
    for number, entry in enumerate(doc["witnesses"], start=1):
        for cmd in witness_steps:
            run.append(cmd.replace("NAME", entry["name"]).replace("-N.", f"-{number}."))
    out = []
    for cmd in run:
        r = subprocess.run(["bash", "-c", cmd], cwd=directory, capture_output=True, text=True)
        out.append((cmd, r.returncode, r.stdout + r.stderr))
    return out


def later_openssl_steps(directory: Path) -> list[tuple[str, int, str]]:
    """VERIFY.md's section 6, run literally as an auditor would: the later note's signature by
    SAE (one shell), each witness's cosignature of it, then the consistency proof's script."""
    openssl()
    section = VERIFY_MD.split("## 6.")[1].split("## All at once")[0]
    script = re.search(r"```python\n(.*?)```", section, re.S)
    assert script is not None
    (directory / "consistency.py").write_text(script.group(1))
    text = re.sub(r"```python\n.*?```", "", section, flags=re.S)
    commands = [ln[4:] for ln in text.replace("\\\n", "").splitlines() if ln.startswith("    ")]
    log_steps, witness_steps = commands[:4], commands[4:]
    assert len(witness_steps) == 4, commands
    doc = json.loads((directory / "witnesses.json").read_text())
    run = ["\n".join(log_steps)]
    for number, entry in enumerate(doc["witnesses"], start=1):
        run.append(
            "\n".join(
                cmd.replace("NAME", entry["name"]).replace("-N.", f"-{number}.")
                for cmd in witness_steps
            )
        )
    run.append("python3 consistency.py")
    out = []
    for cmd in run:
        r = subprocess.run(["bash", "-c", cmd], cwd=directory, capture_output=True, text=True)
        out.append((cmd, r.returncode, r.stdout + r.stderr))
    return out


def test_deposits_are_cosigned_and_bundles_carry_the_cosignatures(
    archive: Archive, tmp_path: Path
) -> None:
    object_id, content = deposit(archive, "MSG-WITNESS-1")
    # The server's own background: the deposit pokes the sealer, the sealed head is offered to
    # the witnesses by the witnessing thread — nobody asks here.
    deadline = time.monotonic() + 30
    while archive.api.client.get("/health").json()["witnesses"]["witnessed_size"] is None:
        assert time.monotonic() < deadline, "the background did not have a head co-signed"
        time.sleep(0.2)
    deposit(archive, "MSG-WITNESS-2")
    size = archive.seal_and_witness()

    # /health: the latest witnessed size, its age, ok.
    health = archive.api.client.get("/health").json()
    assert health["witnesses"]["witnessed_size"] == size, health
    assert health["witnesses"]["ok"] is True
    assert health["witnesses"]["witnessed_age_seconds"] >= 0
    # The metrics say the same (issue #18: the latest witnessed size and its age, as gauges).
    from tests.test_metrics import scrape, value

    scraped = scrape(archive.api)
    assert value(scraped, "sae_journal_witnessed_size") == size
    assert 0 <= value(scraped, "sae_journal_witnessed_age_seconds") < 300

    # The console's dashboard says it, in French.
    from tests.console.helpers import signed_in

    page = signed_in(archive.api).get("/console/").text
    assert "Témoins" in page
    assert "Contresigné" in page
    assert "Quorum : 2 sur 2" in page
    assert "Dernière tête contresignée" in page
    archive.api.client.cookies.clear()

    # The head's note: the archive's signature and both cosignatures, each verifying.
    auditor = archive.api.token("auditor")
    head = archive.api.client.get(
        f"/api/v1/journal/heads/{size}", headers=archive.api.auth(auditor)
    ).json()
    note = Note.parse(head["note"])
    vkey = archive.api.client.get("/api/v1/journal/vkey", headers=archive.api.auth(auditor))
    verifiers = [Verifier.parse(vkey.text)] + [Verifier.parse(w.vkey) for w in archive.witnesses]
    assert len(note.verified_by(verifiers)) == 3
    assert note.text.splitlines()[:2] == [ORIGIN, str(size)]
    assert base64.b64decode(note.text.splitlines()[2]).hex() == head["root_hash"]

    # `sae journal vkey` prints the same vkey on its last line.
    printed = sae("journal", "vkey", env=archive.env())
    assert printed.returncode == 0, printed.stdout + printed.stderr
    assert printed.stdout.strip().splitlines()[-1] == vkey.text.strip()

    # The bundle: sae verify (with both witnesses required), verify.py, the openssl steps.
    bundle = proof(archive, object_id)
    vkeys = [w.vkey for w in archive.witnesses]
    report = verify_bundle(bundle, content=content, witnesses=vkeys)
    assert report.valid, report.failure
    assert "quorum 2" in report.passed[-1][1]
    d = unzip(bundle, tmp_path / "bundle", content)
    run = verify_py(d, *vkeys)
    assert run.returncode == 0, run.stdout
    steps = openssl_steps(d)
    assert len(steps) == 1 + 2 * 3
    assert all(rc == 0 for _, rc, _ in steps), steps
    assert sum("Signature Verified Successfully" in o for _, _, o in steps) == 3
    assert steps[3][2].startswith("cosignature/v1\ntime ")

    (tmp_path / "bundle.zip").write_bytes(bundle)
    by_cli = sae(
        "verify", str(tmp_path / "bundle.zip"), "--witness", vkeys[0], "--witness", vkeys[1]
    )
    assert by_cli.returncode == 0, by_cli.stdout + by_cli.stderr
    assert "OK   witnesses" in by_cli.stdout

    # A witness the auditor requires but who never co-signed: refused.
    stranger = sae("witness", "init", "--data", str(tmp_path / "x"), "--name", "stranger.example/w")
    other = stranger.stdout.strip().splitlines()[-1]
    assert not verify_bundle(bundle, content=content, witnesses=[other]).valid
    assert verify_py(d, other).returncode == 1
    by_cli = sae("verify", str(tmp_path / "bundle.zip"), "--witness", other)
    assert by_cli.returncode == 1
    assert "no cosignature by the required witness stranger.example/w" in by_cli.stdout

    # An altered cosignature fails sae verify, verify.py and the openssl step.
    altered = tmp_path / "altered"
    files = dict(_read(bundle))
    lines = files["checkpoint.note"].decode().splitlines(keepends=True)
    witness_line = next(
        i for i, ln in enumerate(lines) if ln.startswith(f"— {archive.witnesses[0].name} ")
    )
    raw = bytearray(base64.b64decode(lines[witness_line].split(" ")[2]))
    raw[-1] ^= 1
    lines[witness_line] = f"— {archive.witnesses[0].name} {base64.b64encode(bytes(raw)).decode()}\n"
    files["checkpoint.note"] = "".join(lines).encode()
    forged = _zip(files)
    failed = verify_bundle(forged, content=content)
    assert failed.failure is not None
    assert failed.failure[0] == "witnesses", failed.failure
    d2 = unzip(forged, altered, content)
    assert verify_py(d2).returncode == 1
    steps = openssl_steps(d2)
    verified = [(rc, "Verified Successfully" in o) for cmd, rc, o in steps if "pkeyutl" in cmd]
    assert verified == [(0, True), (1, False), (0, True)], steps


def proof_with(archive: Archive, object_id: str, later: str) -> tuple[int, bytes, str]:
    auditor = archive.api.token("auditor")
    got = archive.api.client.get(
        f"/api/v1/objects/{object_id}/proof",
        params={"consistent_with": later},
        headers=archive.api.auth(auditor),
    )
    return got.status_code, got.content, got.headers.get("content-type", "")


def all_verifiers(bundle: bytes, tmp_path: Path, content: bytes, *vkeys: str) -> list[str]:
    """The outcome of sae's verify_bundle, verify.py and ``sae verify``: "OK" or the failure."""
    report = verify_bundle(bundle, content=content, witnesses=vkeys)
    by_lib = "OK" if report.failure is None else "FAIL {}: {}".format(*report.failure)
    d = unzip(bundle, tmp_path, content)
    run = verify_py(d, *vkeys)
    (tmp_path / "b.zip").write_bytes(bundle)
    args = [a for v in vkeys for a in ("--witness", v)]
    cli = sae(
        "verify",
        str(tmp_path / "b.zip"),
        "--object",
        str(d / "object.pdf"),
        *args,
        env={"COLUMNS": "500"},
    )
    return [by_lib, _failure(run), _failure(cli)]


def _failure(run: subprocess.CompletedProcess[str]) -> str:
    if run.returncode == 0:
        return "OK"
    return next((ln for ln in run.stdout.splitlines() if ln.startswith("FAIL")), run.stdout)


def test_a_bundle_carries_a_later_head_and_the_proof_to_it(
    archive: Archive, tmp_path: Path
) -> None:
    object_id, content = deposit(archive, "MSG-LATER-1")
    archive.seal_and_witness()
    old_bundle = proof(archive, object_id)
    assert "consistency.note" not in dict(_read(old_bundle))
    # The bundle's head: the earliest witnessed one covering the object (the background's
    # sealer may have had one co-signed before the test's).
    first = json.loads(dict(_read(old_bundle))["tree-head.json"])["tree_size"]
    deposit(archive, "MSG-LATER-2")
    deposit(archive, "MSG-LATER-3")
    sealed = archive.seal_and_witness()
    vkeys = [w.vkey for w in archive.witnesses]

    # consistent_with=latest: the same object's bundle (its head is still the first one), plus
    # the latest witnessed head and the proof from the first to it.
    status, bundle, kind = proof_with(archive, object_id, "latest")
    assert status == 200, bundle[:300]
    assert kind == "application/zip"
    files = dict(_read(bundle))
    doc = json.loads(files["consistency.json"])
    second = doc["second"]
    assert doc["first"] == first, doc
    assert second >= sealed > first, (doc, sealed)
    assert doc["proof"], "a proof between two different sizes is never empty"
    later = Note.parse(files["consistency.note"])
    assert later.text.splitlines()[:2] == [ORIGIN, str(second)]
    assert len(later.signatures) == 3  # the archive's and both witnesses'
    assert all_verifiers(bundle, tmp_path / "ok", content, *vkeys) == ["OK"] * 3
    report = verify_bundle(bundle, content=content, witnesses=vkeys)
    assert report.passed[-1][0] == "consistency"
    assert f"the head of {second} leaves" in report.passed[-1][1]
    d = unzip(bundle, tmp_path / "py", content)
    assert "OK   consistency: the head of" in verify_py(d, *vkeys).stdout
    # VERIFY.md's openssl steps for the later note, and its consistency script, pass.
    steps = later_openssl_steps(d)
    assert [rc for _, rc, _ in steps] == [0, 0, 0, 0], steps
    assert ["Signature Verified Successfully" in out for _, _, out in steps[:3]] == [True] * 3
    assert f"the head of {second} leaves extends this bundle's head of {first}" in steps[3][2]
    # An explicit size is the same bundle.
    assert proof_with(archive, object_id, str(second))[1] == bundle

    # sae journal consistency from the two bundles alone: the old one kept by the auditor,
    # the new one carrying the proof from the old one's size.
    (tmp_path / "old.zip").write_bytes(old_bundle)
    (tmp_path / "new.zip").write_bytes(bundle)
    done = sae("journal", "consistency", str(tmp_path / "old.zip"), str(tmp_path / "new.zip"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"NEW ({second} leaves) extends OLD ({first} leaves)" in done.stdout
    assert "CONSISTENT" in done.stdout
    # The later head as a bare note (GET /journal/heads/{size}): the new bundle, as OLD,
    # carries the proof to it; the old bundle carries none, and a proof file is asked for.
    auditor = archive.api.token("auditor")
    head2 = archive.api.client.get(
        f"/api/v1/journal/heads/{second}", headers=archive.api.auth(auditor)
    ).json()
    (tmp_path / "later.note").write_text(head2["note"])
    log_vkey = archive.api.client.get("/api/v1/journal/vkey", headers=archive.api.auth(auditor))
    vkey_args = ["--vkey", log_vkey.text.strip()]
    done = sae(
        "journal",
        "consistency",
        str(tmp_path / "new.zip"),
        str(tmp_path / "later.note"),
        *vkey_args,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OLD carries a later head of NEW's size" in done.stdout
    done = sae(
        "journal",
        "consistency",
        str(tmp_path / "old.zip"),
        str(tmp_path / "later.note"),
        *vkey_args,
    )
    assert done.returncode == 1
    assert "--proof FILE needed" in done.stdout

    # An altered proof: every verifier fails on it, and so does the consistency command.
    altered = dict(files)
    hashes = list(doc["proof"])
    hashes[0] = ("0" if hashes[0][0] != "0" else "1") + hashes[0][1:]
    altered["consistency.json"] = json.dumps({**doc, "proof": hashes}).encode()
    forged = _zip(altered)
    outcomes = all_verifiers(forged, tmp_path / "altered", content)
    assert all(o.startswith("FAIL consistency: the proof does not lead") for o in outcomes), (
        outcomes
    )
    steps = later_openssl_steps(unzip(forged, tmp_path / "altered-md", content))
    assert [rc for _, rc, _ in steps] == [0, 0, 0, 1], steps  # the notes are intact
    assert "NOT an extension" in steps[3][2]
    (tmp_path / "forged.zip").write_bytes(forged)
    done = sae("journal", "consistency", str(tmp_path / "old.zip"), str(tmp_path / "forged.zip"))
    assert done.returncode == 1, done.stdout
    assert "NOT CONSISTENT" in done.stdout

    # A swapped head: a later, genuine and co-signed head put in place of the one the proof
    # leads to (consistency.json's second and second_root rewritten to match it) — the proof
    # does not lead there; left unrewritten, the file names another head.
    deposit(archive, "MSG-LATER-4")
    third = archive.seal_and_witness()
    head3 = archive.api.client.get(
        f"/api/v1/journal/heads/{third}", headers=archive.api.auth(auditor)
    ).json()
    swapped = dict(files)
    swapped["consistency.note"] = head3["note"].encode()
    outcomes = all_verifiers(_zip(swapped), tmp_path / "swapped1", content)
    assert all("consistency" in o and "not between" in o for o in outcomes), outcomes
    swapped["consistency.json"] = json.dumps(
        {**doc, "second": third, "second_root": head3["root_hash"]}
    ).encode()
    outcomes = all_verifiers(_zip(swapped), tmp_path / "swapped2", content)
    assert all("consistency" in o and "does not lead" in o for o in outcomes), outcomes
    (tmp_path / "swapped.zip").write_bytes(_zip(swapped))
    done = sae("journal", "consistency", str(tmp_path / "old.zip"), str(tmp_path / "swapped.zip"))
    assert done.returncode == 1, done.stdout
    assert "NOT CONSISTENT" in done.stdout

    # A later head whose cosignature was altered fails too (the quorum is the later head's
    # worth); one left with the archive's signature only is short of the quorum.
    lines = files["consistency.note"].decode().splitlines(keepends=True)
    name = archive.witnesses[0].name
    at = next(i for i, ln in enumerate(lines) if ln.startswith(f"— {name} "))
    raw = bytearray(base64.b64decode(lines[at].split(" ")[2]))
    raw[-1] ^= 1
    lines[at] = f"— {name} {base64.b64encode(bytes(raw)).decode()}\n"
    bad = {**files, "consistency.note": "".join(lines).encode()}
    outcomes = all_verifiers(_zip(bad), tmp_path / "cosig", content)
    assert all("consistency" in o and "does not verify" in o for o in outcomes), outcomes
    steps = later_openssl_steps(unzip(_zip(bad), tmp_path / "cosig-md", content))
    verified = [(rc, "Verified Successfully" in out) for _, rc, out in steps[:3]]
    assert verified == [(0, True), (1, False), (0, True)], steps  # the altered witness's fails
    keep = files["consistency.note"].decode().splitlines(keepends=True)
    bare = {
        **files,
        "consistency.note": "".join(
            ln for ln in keep if not any(ln.startswith(f"— {w.name} ") for w in archive.witnesses)
        ).encode(),
    }
    outcomes = all_verifiers(_zip(bare), tmp_path / "bare", content)
    assert all("consistency" in o and "quorum of 2" in o for o in outcomes), outcomes

    # Refused requests: not a size, a head smaller than the bundle's, no head of that size, a
    # head not co-signed by the quorum.
    assert proof_with(archive, object_id, "soon")[0] == 400
    deposit(archive, "MSG-LATER-5")
    later_object, _ = deposit(archive, "MSG-LATER-6")
    archive.seal_and_witness()
    assert proof_with(archive, later_object, str(first))[0] == 400
    assert proof_with(archive, object_id, str(10**6))[0] == 404
    from sae.journal.sealing import seal_now

    archive.witnesses[0].stop()  # one cosignature at most from now on: below the quorum
    deposit(archive, "MSG-LATER-7")
    unwitnessed = seal_now(archive.runtime.sessions, archive.settings, wait=True)
    assert unwitnessed is not None
    archive.witness_round()
    status, body, _ = proof_with(archive, object_id, str(unwitnessed.tree_size))
    assert status == 400, body
    assert b"quorum" in body


def test_quorum_a_witness_down_and_a_lost_cosignature(archive: Archive) -> None:
    deposit(archive, "MSG-QUORUM-1")
    first = archive.seal_and_witness()
    down, up = archive.witnesses
    down.stop()
    deposit(archive, "MSG-QUORUM-2")
    from sae.journal.sealing import seal_now

    second = seal_now(archive.runtime.sessions, archive.settings, wait=True)
    assert second is not None
    client = WitnessClient(archive.runtime.sessions, archive.runtime.witnesses)
    outcomes = client.round()
    assert outcomes[down.name] == "unreachable"
    assert outcomes.get(up.name, "cosigned") == "cosigned"  # the sealer's round may be first
    assert client.round()[down.name] == "waiting"  # retried later, with a delay
    # One cosignature of two: not witnessed; /health still names the earlier head.
    health = archive.api.client.get("/health").json()["witnesses"]
    assert health["witnessed_size"] == first
    assert health["latest_size"] >= second.tree_size

    # The witness comes back on its address: asked again, it co-signs (from its own size).
    down.start(port=int(down.url.rsplit(":", 1)[1]))
    assert archive.seal_and_witness() >= second.tree_size

    # A cosignature row lost on our side: the witness answers 409 with a size we sealed, we
    # ask again from it — no refusal.
    with archive.runtime.sessions() as session:
        session.query(HeadCosignature).filter(HeadCosignature.witness == up.name).delete()
        session.commit()
    deposit(archive, "MSG-QUORUM-3")
    archive.seal_and_witness()
    with archive.runtime.sessions() as session:
        assert session.scalars(select(Event).where(Event.type == WITNESS_REFUSED)).all() == []


def test_the_rewrite_attack_is_refused_and_caught(
    archive: Archive, tmp_path: Path, database: Database
) -> None:
    object_id, content = deposit(archive, "MSG-BEFORE-1")
    deposit(archive, "MSG-BEFORE-2")
    size = archive.seal_and_witness()
    bundle_before = proof(archive, object_id)
    vkeys = [w.vkey for w in archive.witnesses]
    assert verify_bundle(bundle_before, content=content, witnesses=vkeys).valid

    # The attack: full access to the server. The journal's events are replaced by another
    # history (a transfer that never was), the tree recomputed over it, and its heads signed
    # again with the archive's own keys — every check that trusts the server passes.
    from sae.journal.models import HeadCosignature as Cosig
    from sae.journal.models import JournalNode, JournalState, TreeHead
    from sae.journal.service import NewEvent, append_events, ensure_state

    runtime = archive.runtime
    with runtime.sessions() as session:
        session.query(Cosig).delete()
        session.query(TreeHead).delete()
        session.query(JournalNode).delete()
        session.query(Event).delete()
        session.query(JournalState).delete()
        ensure_state(session)
        append_events(
            session,
            [
                NewEvent(type="auth.token_created", actor="admin", payload={"n": i})
                for i in range(size + 3)
            ],
        )
        session.commit()
    from sae.journal.sealing import seal_now

    forged = seal_now(runtime.sessions, archive.settings, wait=True)
    assert forged is not None
    assert forged.tree_size == size + 3
    # Both witnesses refuse the rewritten history: evidence, journaled, not retried blindly.
    outcomes = archive.witness_round()
    assert outcomes == {w.name: "refused" for w in archive.witnesses}, outcomes
    with runtime.sessions() as session:
        refusals = session.scalars(select(Event).where(Event.type == WITNESS_REFUSED)).all()
    assert {r.payload["witness"] for r in refusals} == {w.name for w in archive.witnesses}
    assert {r.payload["status"] for r in refusals} <= {409, 422}
    again = archive.witness_round()
    assert set(again.values()) == {"refused"}  # asked again: refused again, never co-signed
    # Each witness's refusal is an alert (mailed when SAE_ALERT_* say where), once per witness.
    from sae.alerts.models import Alert
    from sae.alerts.worker import run_once

    run_once(runtime.sessions, archive.settings, runtime.offer_set)
    with runtime.sessions() as session:
        standing = session.scalars(
            select(Alert).where(Alert.condition == "witness_refused", Alert.active.is_(True))
        ).all()
    assert {a.subject for a in standing} == {w.name for w in archive.witnesses}
    assert all(a.notifications == 1 and not a.pending for a in standing)

    # /health reports no witnessed head for the forged history.
    health = archive.api.client.get("/health").json()
    assert health["witnesses"]["witnessed_size"] is None

    # `sae journal verify` checks the witnesses' records: it fails and says why.
    verified = sae("journal", "verify", "--skip-objects", env=archive.env())
    assert verified.returncode == 1, verified.stdout + verified.stderr
    assert "REFUTED" in verified.stdout
    assert "rewritten" in verified.stdout or "replaced" in verified.stdout

    # The bundle issued before the attack still verifies, with its cosignatures.
    report = verify_bundle(bundle_before, content=content, witnesses=vkeys)
    assert report.valid, report.failure
    d = unzip(bundle_before, tmp_path / "before", content)
    assert verify_py(d, *vkeys).returncode == 0

    # The same attacker with a new note key: its notes are not the log's (403), refused too;
    # `sae journal witness` says so and exits 1.
    import sae.journal.notekey as notekey

    notekey.note_key_path(archive.settings).unlink()
    notekey._cache.clear()
    with runtime.sessions() as session:
        append_events(session, [NewEvent(type="auth.token_created", actor="admin")])
        session.commit()
    assert seal_now(runtime.sessions, archive.settings, wait=True) is not None
    asked = sae("journal", "witness", env={**archive.env(), "COLUMNS": "300"})
    assert asked.returncode == 1, asked.stdout + asked.stderr
    assert asked.stdout.count("refused") == 2
    with runtime.sessions() as session:
        statuses = session.scalars(select(Event).where(Event.type == WITNESS_REFUSED)).all()
    assert 403 in {e.payload["status"] for e in statuses}


def test_offline_consistency_between_two_heads(archive: Archive, tmp_path: Path) -> None:
    object_id, _ = deposit(archive, "MSG-CONS-1")
    archive.seal_and_witness()
    old_bundle = proof(archive, object_id)
    first = json.loads(dict(_read(old_bundle))["tree-head.json"])["tree_size"]
    deposit(archive, "MSG-CONS-2")
    second = archive.seal_and_witness()
    auditor = archive.api.auth(archive.api.token("auditor"))
    new_note = archive.api.client.get(f"/api/v1/journal/heads/{second}", headers=auditor).json()
    consistency = archive.api.client.get(
        "/api/v1/journal/consistency", params={"first": first, "second": second}, headers=auditor
    )
    (tmp_path / "old.zip").write_bytes(old_bundle)
    (tmp_path / "new.note").write_text(new_note["note"])
    (tmp_path / "proof.json").write_bytes(consistency.content)
    vkey = load_note_key(archive.settings).vkey

    said = check_consistency(
        old_bundle, new_note["note"].encode(), consistency.content, vkeys=[vkey]
    )
    assert said[-1].startswith(f"NEW ({second} leaves) extends OLD ({first} leaves)")
    run = sae(
        "journal", "consistency", str(tmp_path / "old.zip"), str(tmp_path / "new.note"),
        "--proof", str(tmp_path / "proof.json"), "--vkey", vkey,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "CONSISTENT" in run.stdout

    # A tampered proof, or the heads swapped, are refused.
    doc = json.loads(consistency.content)
    doc["proof"][0] = "00" * 32
    with pytest.raises(ConsistencyRefused):
        check_consistency(
            old_bundle, new_note["note"].encode(), json.dumps(doc).encode(), vkeys=[vkey]
        )
    with pytest.raises(ConsistencyRefused):
        check_consistency(new_note["note"].encode(), old_bundle, consistency.content, vkeys=[vkey])
    run = sae(
        "journal", "consistency", str(tmp_path / "new.note"), str(tmp_path / "old.zip"),
        "--proof", str(tmp_path / "proof.json"), "--vkey", vkey,
    )  # fmt: skip
    assert run.returncode == 1


def test_the_witnesses_file_is_checked_at_start(tmp_path: Path) -> None:
    from sae.journal.note import WitnessKey

    key = WitnessKey.generate("w.example/a")
    cases = {
        "witnesses: 3": "a 'witnesses' list",
        "witnesses: []\nquorum: 1": "no witness",
        f"witnesses: [{{name: w.example/a, url: 'http://x', vkey: '{key.vkey}'}}]\nquorum: 2": (
            "quorum"
        ),
        f"witnesses: [{{name: w.example/b, url: 'http://x', vkey: '{key.vkey}'}}]": "the key of",
        "witnesses: [{name: w.example/a, url: 'http://x', vkey: 'nope'}]": "bad vkey",
        f"witnesses: [{{name: w.example/a, url: 'ftp://x', vkey: '{key.vkey}'}}]": "http",
        f"witnesses: [{{name: w.example/a, vkey: '{key.vkey}'}}]": "lacks url",
    }
    for text, said in cases.items():
        path = tmp_path / "w.yaml"
        path.write_text(text)
        with pytest.raises(WitnessesConfigError, match=said):
            parse_witnesses(path)
    path.write_text(
        f"witnesses: [{{name: w.example/a, url: 'http://x/', vkey: '{key.vkey}'}}]\nquorum: 1"
    )
    parsed = parse_witnesses(path)
    assert parsed.quorum == 1
    assert parsed.witnesses[0].url == "http://x"
    # A refused file refuses the start, naming the problem (exit 2).
    path.write_text("witnesses: []")
    run = sae(
        "journal", "vkey",
        env={"SAE_DATA_DIR": str(tmp_path / "d"), "SAE_WITNESSES_FILE": str(path)},
    )  # fmt: skip
    assert run.returncode == 2, run.stdout + run.stderr
    assert "no witness declared" in run.stderr


def _read(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(n, zf.read(n)) for n in zf.namelist()]


def _zip(files: dict[str, bytes]) -> bytes:
    from sae.journal.bundle import write_zip

    return write_zip(files)
