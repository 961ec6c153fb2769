"""Proof bundles pass sae verify, verify.py and VERIFY.md's commands; any alteration fails."""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sae.journal.bundle import BUNDLE_FILES, VERIFY_MD, read_zip, verify_bundle, write_zip
from sae.journal.checkpoint import Checkpoint, CheckpointFormatError, SigningKey
from sae.journal.tsa import BuiltinTSA, HttpTSA
from tests.conftest import openssl
from tests.journal.conftest import ExternalTSA
from tests.journal.helpers import CONTENT, make_bundle

MERKLE_SCRIPT = re.search(r"```python\n(.*?)```", VERIFY_MD, re.S)


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="module")
def bundle(builtin_tsa: BuiltinTSA, key: SigningKey) -> bytes:
    return make_bundle(builtin_tsa, key)


def unzip(data: bytes, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        zf.extractall(directory)
    (directory / "object.pdf").write_bytes(CONTENT)
    return directory


def run_verify_py(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "verify.py", ".", "--object", "object.pdf"],
        cwd=directory,
        capture_output=True,
        text=True,
    )


def verify_md_commands(directory: Path) -> list[tuple[str, int, str]]:
    """Run every shell command VERIFY.md gives (and its Python block), as an auditor would."""
    # Up to the witnesses' section: its commands name a witness N (tests/journal/test_witnessing).
    text = re.sub(r"```python\n.*?```", "", VERIFY_MD.split("## 5.")[0], flags=re.S)
    lines = text.replace("\\\n", "").splitlines()
    commands = [ln[4:] for ln in lines if ln.startswith("    ") and not ln.startswith("     ")]
    commands = [c.replace("OBJECT_FILE", "object.pdf") for c in commands if "verify.py" not in c]
    assert MERKLE_SCRIPT is not None
    (directory / "merkle.py").write_text(MERKLE_SCRIPT.group(1))
    commands.append("python3 merkle.py")
    out = []
    for cmd in commands:
        r = subprocess.run(["bash", "-c", cmd], cwd=directory, capture_output=True, text=True)
        out.append((cmd, r.returncode, r.stdout))
    return out


def verify_md_commands_pass(directory: Path) -> bool:
    """True when every check VERIFY.md describes passes."""
    openssl()
    results = verify_md_commands(directory)
    outputs = [o for _, _, o in results]
    assert len(results) == 9, [c for c, _, _ in results]
    sha512sum, from_json = outputs[0].split()[:1], outputs[1].split()
    return (
        all(rc == 0 for _, rc, _ in results)
        and sha512sum == from_json
        and outputs[2].strip() == "True True True"
        and outputs[3].strip() == "Verified OK"
        and outputs[4].strip() == "Verification: OK"
        and outputs[5].strip() == "tsa-chain.pem: OK"
        and "Time stamp" in outputs[6]
        and "Fingerprint" in outputs[7]
        and outputs[8].strip().endswith("OK")
    )


def test_checkpoint_round_trip(key: SigningKey) -> None:
    import datetime as dt

    cp = Checkpoint(
        "sae.local", 5, bytes(range(32)), dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    )
    data = cp.to_bytes()
    assert data == (
        b'{"origin":"sae.local","root_hash":"000102030405060708090a0b0c0d0e0f10111213141516'
        b'1718191a1b1c1d1e1f","timestamp":"2026-01-02T03:04:05Z","tree_size":5}\n'
    )
    assert Checkpoint.from_bytes(data) == cp
    for bad in (data.replace(b"5}", b"-5}"), data.replace(b":5", b": 5"), b"{}", b"x"):
        with pytest.raises(CheckpointFormatError):
            Checkpoint.from_bytes(bad)


def test_bundle_has_the_contract_files(bundle: bytes) -> None:
    files = read_zip(bundle)
    assert list(files) == list(BUNDLE_FILES)
    obj = json.loads(files["object.json"])
    assert set(obj) == {"object_id", "unit_id", "size", "sha512", "title", "producer", "leaf_index"}
    assert set(json.loads(files["inclusion.json"])) == {"leaf_index", "tree_size", "audit_path"}
    assert set(json.loads(files["tree-head.json"])) == {
        "origin",
        "tree_size",
        "root_hash",
        "timestamp",
    }
    assert obj["sha512"].encode() in files["leaf.bin"]


def test_valid_bundle_passes_every_verifier(bundle: bytes, tmp_path: Path) -> None:
    report = verify_bundle(bundle, content=CONTENT)
    assert report.valid, report.failure
    assert [name for name, _ in report.passed] == [
        "files",
        "object",
        "merkle",
        "signature",
        "timestamp",
    ]
    d = unzip(bundle, tmp_path / "b")
    result = run_verify_py(d)
    assert result.returncode == 0, result.stdout
    assert "VALID" in result.stdout
    assert verify_md_commands_pass(d)


def test_external_tsa_bundle_passes_every_verifier(
    external_tsa: ExternalTSA, key: SigningKey, tmp_path: Path
) -> None:
    bundle = make_bundle(HttpTSA(external_tsa.url, external_tsa.anchors), key, size=5, index=4)
    assert verify_bundle(bundle, content=CONTENT).valid
    d = unzip(bundle, tmp_path / "b")
    assert run_verify_py(d).returncode == 0
    assert verify_md_commands_pass(d)


def test_wrong_object_content_fails(bundle: bytes, tmp_path: Path) -> None:
    report = verify_bundle(bundle, content=CONTENT + b"x")
    assert report.failure is not None
    assert report.failure[0] == "object"
    d = unzip(bundle, tmp_path / "b")
    (d / "object.pdf").write_bytes(CONTENT + b"x")
    assert run_verify_py(d).returncode == 1
    assert not verify_md_commands_pass(d)


def _flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x01
    return bytes(out)


@pytest.mark.parametrize("name", BUNDLE_FILES)
@pytest.mark.parametrize("where", [0.35, 0.5, 0.8])
def test_any_altered_file_fails(bundle: bytes, name: str, where: float, tmp_path: Path) -> None:
    files = read_zip(bundle)
    files[name] = _flip(files[name], int(len(files[name]) * where))
    altered = write_zip(files)
    report = verify_bundle(altered, content=CONTENT)
    assert not report.valid, name
    if name in ("verify.py", "VERIFY.md"):
        return  # the auditor's own tools: only SAE's verifier can tell they changed
    d = unzip(altered, tmp_path / "b")
    result = run_verify_py(d)
    assert result.returncode == 1, result.stdout
    assert result.stdout.startswith("FAIL")
    assert not verify_md_commands_pass(d)


@pytest.mark.parametrize(
    ("name", "edit"),
    [
        ("object.json", lambda d: {**d, "sha512": hashlib.sha512(b"other").hexdigest()}),
        ("object.json", lambda d: {**d, "leaf_index": d["leaf_index"] + 1}),
        ("inclusion.json", lambda d: {**d, "leaf_index": d["leaf_index"] - 1}),
        ("inclusion.json", lambda d: {**d, "tree_size": d["tree_size"] + 1}),
        ("inclusion.json", lambda d: {**d, "audit_path": d["audit_path"][::-1]}),
    ],
)
def test_semantic_alterations_fail(bundle: bytes, name: str, edit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    files = read_zip(bundle)
    files[name] = json.dumps(edit(json.loads(files[name]))).encode()
    altered = write_zip(files)
    assert not verify_bundle(altered, content=CONTENT).valid
    d = unzip(altered, tmp_path / "b")
    assert run_verify_py(d).returncode == 1
    assert not verify_md_commands_pass(d)


def test_missing_or_extra_file_fails(bundle: bytes) -> None:
    files = read_zip(bundle)
    del files["tree-head.tsr"]
    assert verify_bundle(write_zip(files)).failure == (
        "files",
        "missing ['tree-head.tsr'], unexpected []",
    )
    files = read_zip(bundle)
    files["extra.txt"] = b"x"
    assert not verify_bundle(write_zip(files)).valid
    assert not verify_bundle(b"not a zip").valid


def test_every_bit_flip_is_detected_by_both_verifiers(bundle: bytes) -> None:
    """Exhaustive over byte positions (every other one, to stay fast) of every evidence file."""
    from sae.journal import verify_standalone

    files = read_zip(bundle)
    for name in BUNDLE_FILES:
        if name in ("VERIFY.md", "verify.py"):
            continue
        for at in range(0, len(files[name]), 2):
            altered = dict(files)
            altered[name] = _flip(files[name], at)
            assert not verify_bundle(write_zip(altered), content=CONTENT).valid, (name, at)
            with pytest.raises(verify_standalone.Invalid):
                verify_standalone.verify(altered, CONTENT)


def test_pinned_tsa_root(bundle: bytes, builtin_tsa: BuiltinTSA, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization as ser

    root = builtin_tsa.anchors[0].public_bytes(ser.Encoding.PEM)
    assert verify_bundle(bundle, tsa_root_pem=root).valid
    other = BuiltinTSA.load(tmp_path / "other-tsa").anchors[0]
    report = verify_bundle(bundle, tsa_root_pem=other.public_bytes(ser.Encoding.PEM))
    assert report.failure is not None
    assert report.failure[0] == "timestamp"
