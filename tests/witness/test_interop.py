"""Interop: the add-checkpoint requests of litewitness's own test (FiloSottile/torchwood,
cmd/litewitness/testdata/litewitness.txt), made by a Go log (Sigsum) with its own keys, sent to
``sae witness serve``. Same answers as litewitness, except for an unknown origin: litewitness
says 403, tlog-witness says 404, and we follow the spec.

The checkpoints are signed by a Sigsum log key (type 0x01, key name = origin =
``sigsum.org/v1/tree/<SHA-256 of the public key>``); the consistency proofs are crafted hashes
that verify with RFC 6962's algorithm — a check of our verification against theirs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sae.journal.note import ED25519, Verifier, verify_cosignature
from sae.witness.store import WitnessStore
from tests.witness.conftest import WITNESS_NAME, WitnessProcess, run_witness, start_witness

SIGSUM_KEY = bytes.fromhex("ffdc2d4d98e4124d3feaf788c0c2f9abfd796083d1f0495437f302ec79cf100f")
ORIGIN = "sigsum.org/v1/tree/4d6d8825a6bb689d459628312889dfbb0bcd41b5211d9e1ce768b0ff0309e562"
OTHER = "sigsum.org/v1/tree/4d6d8825a6bb689d459628312889dfbb0bcd41b5211d9e1ce768b0ff0309e563"

ROOT1 = "KgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
ROOT3 = "RcCI1Nk56ZcSmIEfIn0SleqtV7uvrlXNccFx595Iwl0="
ROOT5 = "QrtXrQZCCvpIgsSmOsah7HdICzMLLyDfxToMql9WTjY="
SIG1 = (
    "UgIom7fPZTqpxWWhyjWduBvTvGVqsokMbqTArsQilegKoFBJQjUFAmQ0+YeSPM3wfUQMFSzVnnNuWRTYrajXpNUbIQY="
)
SIG3 = (
    "UgIom2VbtIcdFbwFAy1n7s6IkAxIY6J/GQOTuZF2ORV39d75cbAj2aQYwyJre36kezNobZs4SUUdrcawfAB8WVrx6go="
)
SIG3_BAD = SIG3[:-2] + "x="
SIG5 = (
    "UgIomw/EOJmWi0i1FQsOj+etB7F8IccFam/jgd6wzRns4QPVmyEZtdvl1U2KEmLOZ/ASRcWJi0tW90dJWAShei7sDww="
)


def request(
    old: int, proof: list[str], size: int, root: str, sig: str, origin: str = ORIGIN
) -> bytes:
    lines = "".join(f"{p}\n" for p in proof)
    return f"old {old}\n{lines}\n{origin}\n{size}\n{root}\n\n— {origin} {sig}\n".encode()


P13 = [
    "KgEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "KgIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
]
P13_BAD = [P13[0], "KgIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABA="]
P15 = [
    "KgEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "+fUDV+k970B4I3uKrqJM4aP1lloPZP8mvr2Z4wRw2LI=",
    "KgQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
]
P35 = [
    "KgIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "KgMAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "wgiIFdZfYNv6WU1OllBKsWnLYIS/DBMqt8Uh/S4OukE=",
    "KgQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
]

#: (request, status litewitness answers / the spec requires, body expected)
SEQUENCE = [
    (request(0, [], 1, ROOT1, SIG1), 200, None),
    (request(1, P13, 3, ROOT3, SIG3_BAD), 403, None),  # a trusted key's signature fails
    (request(1, P13, 3, ROOT3, SIG3, origin=OTHER), 404, None),  # litewitness: 403
    (request(1, [], 3, ROOT3, SIG3), 422, None),  # no proof
    (request(1, P13_BAD, 3, ROOT3, SIG3), 422, None),  # a proof hash altered
    (request(1, P13, 3, ROOT3, SIG3), 200, None),
    (request(1, P15, 5, ROOT5, SIG5), 409, "3\n"),  # old is no longer the latest
    (request(3, P35, 5, ROOT5, SIG5), 200, None),
    (request(0, [], 5, ROOT5, SIG5), 409, "5\n"),
]  # fmt: skip


@pytest.fixture
def sigsum_witness(tmp_path: Path) -> WitnessProcess:
    data = tmp_path / "witness"
    assert run_witness("init", "--data", str(data), "--name", WITNESS_NAME).returncode == 0
    WitnessStore(data).trust(ORIGIN, Verifier.from_public_bytes(ORIGIN, ED25519, SIGSUM_KEY))
    return start_witness(data)


def test_litewitness_request_sequence_gets_the_same_answers(
    sigsum_witness: WitnessProcess,
) -> None:
    cosigner = Verifier.parse(sigsum_witness.vkey)
    try:
        for i, (body, status, expected) in enumerate(SEQUENCE):
            reply = sigsum_witness.post(body)
            assert reply.status == status, (i, reply.text)
            if expected is not None:
                assert reply.content_type == "text/x.tlog.size"
                assert reply.text == expected
            if status == 200:
                text = body.decode().split("\n\n", 1)[1].split("\n\n", 1)[0] + "\n"
                verify_cosignature(cosigner, text, reply.text)
    finally:
        sigsum_witness.kill()
