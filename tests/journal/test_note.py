"""C2SP signed notes, checkpoints and cosignatures (sae.journal.note) against the published
vectors: the examples of c2sp.org/signed-note, tlog-checkpoint and tlog-cosignature, and the
vectors of Go's golang.org/x/mod/sumdb/note (note_test.go), the reference implementation."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sae.journal import note
from sae.journal.note import (
    COSIGNATURE_V1,
    ED25519,
    MAX_SIGNATURES,
    AmbiguousVerifiers,
    Checkpoint,
    CosignatureInvalid,
    InvalidKeyName,
    MalformedCheckpoint,
    MalformedNote,
    MalformedVerifierKey,
    Note,
    NoteError,
    NoteKey,
    NoteUnverified,
    Signature,
    SignatureInvalid,
    UnsupportedKeyType,
    Verifier,
    WitnessKey,
    checkpoint_text,
    cosignature_message,
    key_id,
    parse_checkpoint,
    verify_cosignature,
)
from tests.conftest import require

# --- Go's sumdb/note vectors (note_test.go) ---------------------------------------------------

PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
#: Go's private key "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALV…": 0x01 then the 32-byte seed.
PETER_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb"
    "6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33W"
    "Wd1RvMc+QQ=\n"
)

# --- the C2SP examples -----------------------------------------------------------------------

FOO_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
FOO_NOTE = (
    "This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ON"
    "ncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)
SOFA_TEXT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
SOFA_COSIGNATURE = (
    "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2"
    "oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
)


def test_go_vkey_parses_with_its_name_and_key_id() -> None:
    v = Verifier.parse(PETER_VKEY)
    assert v.name == "PeterNeumann"
    assert v.key_id == bytes.fromhex("c74f20a3")
    assert v.key_type == ED25519
    assert v.vkey == PETER_VKEY


def test_go_private_key_gives_its_vkey_and_its_signature_byte_for_byte() -> None:
    """Ed25519 is deterministic: the same seed and text give Go's exact signature line."""
    key = NoteKey.from_private_bytes("PeterNeumann", PETER_SEED)
    assert key.vkey == PETER_VKEY
    assert key.key_id == bytes.fromhex("c74f20a3")
    assert key.private_bytes() == PETER_SEED
    assert key.sign(TEXT) == PETER_SIG
    assert bytes(Note.sign(TEXT, key)) == (TEXT + "\n" + PETER_SIG).encode()


def test_go_signed_note_verifies_and_the_unknown_signature_is_ignored() -> None:
    peter, enoch = Verifier.parse(PETER_VKEY), Verifier.parse(ENOCH_VKEY)
    n = Note.parse((TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode())
    assert n.text == TEXT
    assert [s.name for s in n.signatures] == ["PeterNeumann", "EnochRoot"]
    assert n.verified_by([peter]) == [peter]
    assert n.verified_by([enoch, peter]) == [enoch, peter]
    assert n.verified_by([]) == []
    with pytest.raises(NoteUnverified):
        n.verify([])


def test_c2sp_signed_note_example_verifies() -> None:
    foo = Verifier.parse(FOO_VKEY)
    assert Note.parse(FOO_NOTE).verify([foo]) == [foo]


def test_altered_text_fails_with_the_key_named() -> None:
    n = Note.parse((TEXT.replace("answer", "Answer") + "\n" + PETER_SIG).encode())
    with pytest.raises(SignatureInvalid, match=r"PeterNeumann\+c74f20a3") as info:
        n.verified_by([Verifier.parse(PETER_VKEY)])
    assert info.value.status == 403


def test_altered_signature_fails() -> None:
    """Go's own case: four characters inserted into the base64 of a known key's signature."""
    bad = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    n = Note.parse((TEXT + "\n" + bad).encode())
    with pytest.raises(SignatureInvalid):
        n.verified_by([Verifier.parse(PETER_VKEY)])


def test_every_bit_of_the_signature_matters() -> None:
    peter = Verifier.parse(PETER_VKEY)
    raw = bytearray(base64.b64decode(PETER_SIG.split(" ")[2]))
    for i in range(4, len(raw)):
        flipped = bytearray(raw)
        flipped[i] ^= 0x01
        line = f"— PeterNeumann {base64.b64encode(bytes(flipped)).decode()}\n"
        with pytest.raises(SignatureInvalid):
            Note.parse(TEXT + "\n" + line).verified_by([peter])


def test_same_name_other_key_id_is_an_unknown_key_and_ignored() -> None:
    """signed-note: a signature sharing the name but not the id (or the reverse) is unknown."""
    raw = base64.b64decode(PETER_SIG.split(" ")[2])
    other_id = f"— PeterNeumann {base64.b64encode(b'xxxx' + raw[4:]).decode()}\n"
    other_name = PETER_SIG.replace("PeterNeumann", "CarmenSandiego")
    for line in (other_id, other_name):
        assert Note.parse(TEXT + "\n" + line).verified_by([Verifier.parse(PETER_VKEY)]) == []


def test_duplicate_signatures_verify_once() -> None:
    peter = Verifier.parse(PETER_VKEY)
    n = Note.parse(TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG)
    assert n.verified_by([peter]) == [peter]


def test_two_verifiers_with_one_name_and_id_are_ambiguous() -> None:
    peter = Verifier.parse(PETER_VKEY)
    twin = Verifier(peter.name, peter.key_id, ED25519, bytes(32))
    with pytest.raises(AmbiguousVerifiers):
        Note.parse(TEXT + "\n" + PETER_SIG).verified_by([peter, twin])


def test_text_with_blank_lines_splits_at_the_last_one() -> None:
    key = NoteKey.generate("example.com/log")
    text = "first\n\nthird\n"
    n = Note.parse(bytes(Note.sign(text, key)))
    assert n.text == text
    assert n.verify([key.verifier]) == [key.verifier]


def test_a_signature_line_before_the_last_blank_line_is_text() -> None:
    n = Note.parse(TEXT + "\n" + PETER_SIG + "\n" + PETER_SIG)
    assert n.text == TEXT + "\n" + PETER_SIG
    with pytest.raises(SignatureInvalid):  # Peter signed TEXT, not this longer text
        n.verified_by([Verifier.parse(PETER_VKEY)])


def test_round_trip_with_several_keys() -> None:
    a, b = NoteKey.generate("a.example/log"), NoteKey.generate("b.example/log")
    signed = Note.sign("hello\n", a, b)
    again = Note.parse(bytes(signed))
    assert again == signed
    assert again.verify([b.verifier, a.verifier]) == [b.verifier, a.verifier]
    restored = NoteKey.from_private_bytes("a.example/log", a.private_bytes())
    assert restored.vkey == a.vkey
    assert a.private_bytes().hex() not in repr(a)


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (TEXT, "no blank line"),  # Go's bad messages, one by one
        (TEXT + "\n", "at least one signature"),
        (TEXT + "\n" + PETER_SIG[:-1], "end with a newline"),
        ("\x01" + TEXT + "\n" + PETER_SIG, "control character U\\+0001"),
        (
            TEXT + "\n" + "— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1F\n",
            "base64",
        ),
        (TEXT + "\n" + PETER_SIG + "Unexpected line.\n", "must start with"),
        (TEXT + "\n" + "— PeterNeumann\n", "no signature after"),
        (TEXT + "\n" + "— PeterNeumann AAAA\n", "shorter than a key id"),
        (TEXT + "\n" + "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZ\n", "base64"),
        (TEXT + "\n" + "—  x08go/ZJ\n", "must not be empty"),
        (TEXT + "\n" + "— Peter+Neumann " + PETER_SIG.split(" ")[2], "plus"),
        ("text\r\n\n" + PETER_SIG, "control character U\\+000D"),
        ("text\t\n\n" + PETER_SIG, "control character U\\+0009"),
    ],
)
def test_malformed_notes_are_refused_saying_why(message: str, why: str) -> None:
    with pytest.raises(MalformedNote, match=why) as info:
        Note.parse(message.encode())
    assert info.value.code == "note.malformed"
    assert info.value.status == 400


def test_invalid_utf8_is_refused() -> None:
    with pytest.raises(MalformedNote, match="UTF-8"):
        Note.parse(b"\xff" + TEXT.encode() + b"\n" + PETER_SIG.encode())


def test_signature_and_size_limits() -> None:
    peter = Verifier.parse(PETER_VKEY)
    assert Note.parse(TEXT + "\n" + PETER_SIG * MAX_SIGNATURES).verify([peter]) == [peter]
    with pytest.raises(MalformedNote, match="at most 100 signatures"):
        Note.parse(TEXT + "\n" + PETER_SIG * (MAX_SIGNATURES + 1))
    with pytest.raises(MalformedNote, match="at most"):
        Note.parse(b"x" * (note.MAX_NOTE_BYTES + 1))


K = PETER_VKEY.split("+", 2)[2]


@pytest.mark.parametrize(
    ("vkey", "error", "why"),
    [
        ("PeterNeumann+c74f20a3", MalformedVerifierKey, "three parts"),
        ("PeterNeumann", MalformedVerifierKey, "three parts"),
        ("+c74f20a3+" + K, MalformedVerifierKey, "empty"),
        ("Peter Neumann+c74f20a3+" + K, MalformedVerifierKey, "space"),
        ("PeterNeumann+c74f20a4+" + K, MalformedVerifierKey, "does not match"),
        ("PeterNeumann+C74F20A3+" + K, MalformedVerifierKey, "lowercase hex"),
        ("PeterNeumann+c74f20zz+" + K, MalformedVerifierKey, "not hex"),
        ("PeterNeumann+c74f20a3+" + K[:-1], MalformedVerifierKey, "base64"),
        # Go's bad keys: the wrong length with an adjusted hash; an unknown algorithm (0x65).
        ("PeterNeumann+cc469956+" + K + "BADKEY==", MalformedVerifierKey, "base64"),
        ("PeterNeumann+173116ae+Z" + K[1:], UnsupportedKeyType, "0x65"),
        ("PeterNeumann+c74f20a3+", MalformedVerifierKey, "empty"),
    ],
)
def test_malformed_vkeys_are_refused_saying_why(
    vkey: str, error: type[NoteError], why: str
) -> None:
    with pytest.raises(error, match=why):
        Verifier.parse(vkey)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "a\u00a0b", "a\nb", "tab\there"])
def test_invalid_key_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidKeyName):
        NoteKey.generate(name)


def test_key_of_wrong_length_is_refused() -> None:
    with pytest.raises(NoteError, match="32 bytes"):
        NoteKey.from_private_bytes("x", b"\x00" * 31)


def test_sign_refuses_a_text_without_final_newline() -> None:
    with pytest.raises(MalformedNote, match="newline"):
        NoteKey.generate("x").sign("no newline")


# --- checkpoints -----------------------------------------------------------------------------


def test_checkpoint_example_round_trips() -> None:
    cp = parse_checkpoint(SOFA_TEXT)
    assert cp == Checkpoint(
        "example.com/behind-the-sofa",
        20852163,
        base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="),
    )
    assert cp.text == SOFA_TEXT
    assert checkpoint_text(cp.origin, cp.size, cp.root_hash) == SOFA_TEXT


def test_checkpoint_with_extension_lines_and_empty_tree() -> None:
    empty = bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    text = checkpoint_text("sae.example/log", 0, empty, ["ext one", "ext two"])
    assert text.endswith("\next one\next two\n")
    assert parse_checkpoint(text) == Checkpoint("sae.example/log", 0, empty, ("ext one", "ext two"))


ROOT = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("origin\n12\n", "at least three lines"),
        (f"origin\n12\n{ROOT}", "newline"),
        (f"\n12\n{ROOT}\n", "origin line is empty"),
        (f"origin\n012\n{ROOT}\n", "leading zero"),
        (f"origin\n-1\n{ROOT}\n", "not a decimal"),
        (f"origin\n1e3\n{ROOT}\n", "not a decimal"),
        (f"origin\n\u0663\n{ROOT}\n", "not a decimal"),
        (f"origin\n99999999999999999999\n{ROOT}\n", "too large"),
        ("origin\n12\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n", "base64"),
        ("origin\n12\nAAAA\n", "32 bytes"),
        (f"origin\n12\n{ROOT}\n\nextension\n", "extension line is empty"),
        (f"origin\x07\n12\n{ROOT}\n", "control character"),
    ],
)
def test_malformed_checkpoints_are_refused_saying_why(text: str, why: str) -> None:
    with pytest.raises(MalformedCheckpoint, match=why):
        parse_checkpoint(text)


def test_checkpoint_text_refuses_what_it_cannot_write() -> None:
    with pytest.raises(MalformedCheckpoint):
        checkpoint_text("", 1, bytes(32))
    with pytest.raises(MalformedCheckpoint):
        checkpoint_text("o", -1, bytes(32))
    with pytest.raises(MalformedCheckpoint):
        checkpoint_text("o", 1, bytes(31))
    with pytest.raises(MalformedCheckpoint):
        checkpoint_text("o", 1, bytes(32), [""])


# --- cosignatures ----------------------------------------------------------------------------


def test_cosignature_example_decodes_to_its_key_id_and_time() -> None:
    """tlog-cosignature's example line carries key id || u64 timestamp || 64 bytes, and its
    timestamp is the one of the spec's example message ("time 1679315147")."""
    s = Signature.parse(SOFA_COSIGNATURE)
    assert s.name == "witness.example.com/w1"
    assert len(s.key_id) == 4
    assert len(s.signature) == 8 + 64
    assert int.from_bytes(s.signature[:8], "big") == 1679315147
    assert cosignature_message(SOFA_TEXT, 1679315147) == (
        b"cosignature/v1\ntime 1679315147\n"
        b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    )


def test_witness_key_uses_type_4_in_its_key_id_and_vkey() -> None:
    w = WitnessKey.generate("witness.example/w1")
    v = Verifier.parse(w.vkey)
    assert v.key_type == COSIGNATURE_V1
    assert base64.b64decode(w.vkey.split("+", 2)[2])[0] == 0x04
    assert w.key_id == key_id("witness.example/w1", 0x04, w.public_bytes)
    assert w.key_id != key_id("witness.example/w1", 0x01, w.public_bytes)


def test_cosignature_round_trip_and_time() -> None:
    w = WitnessKey.generate("witness.example/w1")
    line = w.cosign(SOFA_TEXT, 1679315147)
    assert verify_cosignature(Verifier.parse(w.vkey), SOFA_TEXT, line) == 1679315147
    # A cosignature is a note signature: appended to the checkpoint, it verifies as one.
    log = NoteKey.generate("example.com/behind-the-sofa")
    cosigned = Note.sign(SOFA_TEXT, log).with_signatures(line)
    parsed = Note.parse(bytes(cosigned))
    assert parsed.verify([w.verifier, log.verifier]) == [w.verifier, log.verifier]


def test_cosignature_checks_with_openssl(tmp_path: Path) -> None:
    """An independent Ed25519: openssl verifies our cosignature over the spec's message."""
    openssl = shutil.which("openssl")
    require(openssl, "openssl is not installed")
    assert openssl is not None
    w = WitnessKey.generate("witness.example/w1")
    raw = base64.b64decode(w.cosign(SOFA_TEXT, 1700000000).split(" ")[2])
    assert raw[:4] == w.key_id
    assert int.from_bytes(raw[4:12], "big") == 1700000000
    public = Ed25519PublicKey.from_public_bytes(w.public_bytes)
    (tmp_path / "pub.pem").write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (tmp_path / "msg").write_bytes(b"cosignature/v1\ntime 1700000000\n" + SOFA_TEXT.encode())
    (tmp_path / "sig").write_bytes(raw[12:])
    result = subprocess.run(
        [openssl, "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin"]
        + ["-in", "msg", "-sigfile", "sig"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Signature Verified Successfully" in result.stdout


def test_cosignature_refusals() -> None:
    w = WitnessKey.generate("witness.example/w1")
    v = w.verifier
    line = w.cosign(SOFA_TEXT, 1679315147)
    with pytest.raises(CosignatureInvalid, match="does not verify"):
        verify_cosignature(v, SOFA_TEXT.replace("20852163", "20852164"), line)
    other = WitnessKey.generate("witness.example/w1")
    with pytest.raises(CosignatureInvalid, match="not witness.example/w1"):
        verify_cosignature(other.verifier, SOFA_TEXT, line)
    with pytest.raises(CosignatureInvalid, match="type 0x04"):
        verify_cosignature(NoteKey.generate("x").verifier, SOFA_TEXT, line)
    raw = bytearray(base64.b64decode(line.split(" ")[2]))
    raw[11] ^= 1  # the time is signed: another time does not verify
    with pytest.raises(CosignatureInvalid, match="does not verify"):
        verify_cosignature(v, SOFA_TEXT, f"— {v.name} {base64.b64encode(bytes(raw)).decode()}\n")
    zero = bytes(raw[:4]) + bytes(8) + bytes(raw[12:])
    with pytest.raises(CosignatureInvalid, match="out of range"):
        verify_cosignature(v, SOFA_TEXT, f"— {v.name} {base64.b64encode(zero).decode()}\n")
    short = bytes(raw[:4]) + bytes(raw[12:])
    with pytest.raises(CosignatureInvalid, match="4\\+8\\+64"):
        verify_cosignature(v, SOFA_TEXT, f"— {v.name} {base64.b64encode(short).decode()}\n")
    with pytest.raises(MalformedNote):
        verify_cosignature(v, SOFA_TEXT, "not a signature line")
    with pytest.raises(NoteError, match="1..2\\^63-1"):
        w.cosign(SOFA_TEXT, 0)
    with pytest.raises(NoteError, match="1..2\\^63-1"):
        w.cosign(SOFA_TEXT, 1 << 63)
