"""tlog-witness against a real ``sae witness serve`` process: co-signing, and every refusal with
the status the spec gives."""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path

import pytest

from sae.journal.note import Note, NoteKey, Verifier, parse_checkpoint, verify_cosignature
from tests.witness.conftest import (
    ORIGIN,
    WITNESS_NAME,
    Log,
    WitnessProcess,
    run_witness,
    start_witness,
)


def cosigned(witness: WitnessProcess, log: Log, old: int, size: int) -> int:
    """Co-sign ``size`` from ``old``; check the cosignature; return its time."""
    reply = witness.post(log.body(old, size))
    assert reply.status == 200, reply.text
    assert reply.text.startswith(f"— {WITNESS_NAME} ")
    assert reply.text.endswith("\n")
    assert reply.text.count("\n") == 1
    return verify_cosignature(Verifier.parse(witness.vkey), log.text(size), reply.text)


def test_first_checkpoint_then_a_larger_one_with_its_proof(
    witness: WitnessProcess, log: Log
) -> None:
    before = int(time.time())
    stamp = cosigned(witness, log, 0, 5)
    assert before <= stamp <= int(time.time())
    cosigned(witness, log, 5, 13)
    cosigned(witness, log, 13, 64)  # a power of two: the proof starts at the old root
    cosigned(witness, log, 64, 64)  # the same checkpoint again: same size, same root
    cosigned(witness, log, 64, 1000)


def test_the_cosignature_joins_the_note_as_one_more_signature(
    witness: WitnessProcess, log: Log
) -> None:
    line = witness.post(log.body(0, 7)).text
    note = Note.parse(log.note(7)).with_signatures(line)
    both = [Verifier.parse(witness.vkey), log.key.verifier]
    assert Note.parse(bytes(note)).verify(both) == both


def test_rollback_is_refused_409_with_the_latest_size(witness: WitnessProcess, log: Log) -> None:
    cosigned(witness, log, 0, 10)
    for old, size in [(0, 5), (5, 8), (0, 10), (3, 20)]:
        reply = witness.post(log.body(old, size))
        assert reply.status == 409, (old, size, reply.text)
        assert reply.content_type == "text/x.tlog.size"
        assert reply.text == "10\n"
    # old larger than the checkpoint's own size is malformed (400), never co-signed
    assert witness.post(log.body(10, 5, proof=[])).status == 400
    # the client catches up from the size the 409 gave
    cosigned(witness, log, 10, 20)


def test_fork_at_the_same_size_is_refused(witness: WitnessProcess, log: Log) -> None:
    cosigned(witness, log, 0, 10)
    fork = Log(key=log.key, prefix=b"rewritten")  # same origin, same key, other history
    assert fork.root(10) != log.root(10)
    reply = witness.post(fork.body(10, 10))
    assert reply.status == 422
    assert "fork" in reply.text
    assert witness.post(fork.body(0, 10)).status == 409
    # nor can the fork be grown past the record: its proof does not start at the co-signed root
    assert witness.post(fork.body(10, 16)).status == 422
    cosigned(witness, log, 10, 11)  # the real log goes on


def test_bad_consistency_proofs_are_refused_422(witness: WitnessProcess, log: Log) -> None:
    cosigned(witness, log, 0, 6)
    proof = log.proof(6, 15)
    flipped = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
    cases = [flipped, proof[:-1], [*proof, proof[0]], [], list(reversed(proof))]
    for bad in cases:
        reply = witness.post(log.body(6, 15, proof=bad))
        assert reply.status == 422, reply.text
    cosigned(witness, log, 6, 15)  # nothing was recorded by the refusals


def test_proof_from_zero_must_be_empty_and_the_empty_tree_has_its_root(
    witness: WitnessProcess, log: Log
) -> None:
    assert witness.post(log.body(0, 4, proof=[bytes(32)])).status == 422
    empty = Log(key=log.key)
    cosigned(witness, empty, 0, 0)
    wrong = f"{ORIGIN}\n0\n{base64.b64encode(bytes(32)).decode()}\n"
    assert witness.post(b"old 0\n\n" + bytes(Note.sign(wrong, log.key))).status == 422


def test_unknown_origin_is_404(witness: WitnessProcess) -> None:
    stranger = Log(origin="other.example/log", key=NoteKey.generate("other.example/log"))
    reply = witness.post(stranger.body(0, 3))
    assert reply.status == 404
    assert "other.example/log" in reply.text


def test_no_valid_log_signature_is_403(witness: WitnessProcess, log: Log) -> None:
    text = log.text(3)
    impostor = NoteKey.generate(ORIGIN)  # same name, another key: an unknown key, ignored
    assert witness.post(b"old 0\n\n" + bytes(Note.sign(text, impostor))).status == 403
    # the log's key over another text: a known key whose signature fails
    forged = Note(text, Note.sign(log.text(4), log.key).signatures)
    assert witness.post(b"old 0\n\n" + bytes(forged)).status == 403
    # a valid signature beside a failing one by the same trusted key: still refused
    both = forged.with_signatures(log.key.sign(text))
    assert witness.post(b"old 0\n\n" + bytes(both)).status == 403
    assert witness.post(b"old 0\n\n" + bytes(Note.sign(text, impostor, log.key))).status == 200


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"garbage",
        b"old 0\n",
        b"old 01\n\n",
        b"old -1\n\n",
        b"old x\n\n",
        b"new 0\n\n",
        b"old 0\nnot base64!\n\n",
        b"old 0\nAAAA\n\n",
        b"old 0\n\nnot a note",
        b"old 0\n\n" + "\u00e9".encode("latin-1"),
    ],
)
def test_malformed_requests_are_400(witness: WitnessProcess, body: bytes) -> None:
    assert witness.post(body).status == 400


def test_malformed_checkpoint_and_too_many_proof_lines_are_400(
    witness: WitnessProcess, log: Log
) -> None:
    not_a_checkpoint = bytes(Note.sign("just text\n", log.key))
    assert witness.post(b"old 0\n\n" + not_a_checkpoint).status == 400
    assert witness.post(log.body(0, 100, proof=[bytes(32)] * 64)).status == 400
    assert witness.post(log.body(0, 3), path="/other").status == 404


def test_state_survives_a_restart(tmp_path: Path, witness: WitnessProcess, log: Log) -> None:
    cosigned(witness, log, 0, 9)
    assert witness.stop() == 0  # SIGTERM: a clean stop
    again = start_witness(witness.data)
    try:
        assert again.vkey == witness.vkey
        reply = again.post(log.body(0, 12))
        assert reply.status == 409
        assert reply.text == "9\n"
        cosigned(again, log, 9, 12)
    finally:
        again.kill()


def test_monitoring_endpoint_serves_the_cosigned_checkpoint(
    witness: WitnessProcess, log: Log
) -> None:
    origin_hash = hashlib.sha256(ORIGIN.encode()).hexdigest()
    assert witness.request("GET", f"/{origin_hash}/checkpoint").status == 404
    cosigned(witness, log, 0, 21)
    reply = witness.request("GET", f"/{origin_hash}/checkpoint")
    assert reply.status == 200
    note = Note.parse(reply.text)
    assert parse_checkpoint(note.text).size == 21
    both = [log.key.verifier, Verifier.parse(witness.vkey)]
    assert note.verify(both) == both
    assert witness.request("GET", "/" + "0" * 64 + "/checkpoint").status == 404


def test_a_log_trusted_while_serving_is_accepted_at_once(witness: WitnessProcess, log: Log) -> None:
    other = Log(origin="voisine.example/journal", key=NoteKey.generate("voisine.example/log"))
    assert witness.post(other.body(0, 2)).status == 404
    done = run_witness("trust", "--data", str(witness.data), "--origin", other.origin,
                   "--vkey", other.key.vkey)  # fmt: skip
    assert done.returncode == 0, done.stderr
    cosigned(witness, other, 0, 2)


def test_a_log_key_rotated_in_is_accepted_beside_the_old_one(
    witness: WitnessProcess, log: Log
) -> None:
    cosigned(witness, log, 0, 3)
    new_key = NoteKey.generate(ORIGIN)
    rotated = Log(key=new_key, tree=log.tree)
    assert witness.post(rotated.body(3, 5)).status == 403
    done = run_witness("trust", "--data", str(witness.data), "--origin", ORIGIN,
                   "--vkey", new_key.vkey)  # fmt: skip
    assert done.returncode == 0, done.stderr
    cosigned(witness, rotated, 3, 5)
    cosigned(witness, log, 5, 6)
