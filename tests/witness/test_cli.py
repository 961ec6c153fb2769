"""``sae witness init|trust|serve`` through the ``sae`` command: files, modes, refusals, exit
codes."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from sae.journal.note import COSIGNATURE_V1, Verifier, WitnessKey, verify_cosignature
from sae.witness.store import WitnessStore
from tests.witness.conftest import ORIGIN, WITNESS_NAME, Log, run_witness, start_witness


def sae(*args: str) -> tuple[int, str, str]:
    done = run_witness(*args, via_sae=True)
    return done.returncode, done.stdout, done.stderr


def test_init_prints_the_vkey_last_and_keeps_the_key_0600(tmp_path: Path) -> None:
    data = tmp_path / "w"
    code, out, _ = sae("init", "--data", str(data), "--name", WITNESS_NAME)
    assert code == 0
    vkey = out.strip().splitlines()[-1]
    verifier = Verifier.parse(vkey)
    assert verifier.name == WITNESS_NAME
    assert verifier.key_type == COSIGNATURE_V1
    assert stat.S_IMODE((data / "witness.key").stat().st_mode) == 0o600
    assert (data / "witness.vkey").read_text() == vkey + "\n"
    assert WitnessStore(data).load_key().vkey == vkey
    assert WitnessStore(data).load_key().private_bytes().hex() not in out


def test_init_never_overwrites_a_key(tmp_path: Path) -> None:
    data = tmp_path / "w"
    assert sae("init", "--data", str(data), "--name", WITNESS_NAME)[0] == 0
    before = (data / "witness.key").read_bytes()
    code, _, err = sae("init", "--data", str(data), "--name", "other.example/w")
    assert code == 1
    assert "exists" in err
    assert (data / "witness.key").read_bytes() == before


def test_init_refuses_a_bad_name(tmp_path: Path) -> None:
    for name in ("has space", "has+plus", ""):
        code, _, _ = sae("init", "--data", str(tmp_path / "w"), "--name", name)
        assert code == 2, name
    assert not (tmp_path / "w" / "witness.key").exists()


def test_trust_validates_the_vkey(tmp_path: Path) -> None:
    data = tmp_path / "w"
    log = Log()
    code, _, err = sae("trust", "--data", str(data), "--origin", ORIGIN, "--vkey", log.key.vkey)
    assert code == 1, "a directory without a key is refused"
    assert "witness init" in err
    assert sae("init", "--data", str(data), "--name", WITNESS_NAME)[0] == 0
    broken = log.key.vkey[:-2] + "AA"  # another public key: its key id no longer matches
    code, _, err = sae("trust", "--data", str(data), "--origin", ORIGIN, "--vkey", broken)
    assert code == 1
    assert "does not match" in err
    witness_vkey = WitnessKey.generate("w.example/x").vkey  # a type 0x04 key is no log key
    assert sae("trust", "--data", str(data), "--origin", ORIGIN, "--vkey", witness_vkey)[0] == 2
    code, _, err = sae("trust", "--data", str(data), "--origin", "a\tb", "--vkey", log.key.vkey)
    assert code == 1
    # the vkey's name need not be the origin
    code, out, _ = sae("trust", "--data", str(data), "--origin", "x.example/log", "--vkey",
                       log.key.vkey)  # fmt: skip
    assert code == 0
    assert "now trusted" in out
    code, out, _ = sae("trust", "--data", str(data), "--origin", "x.example/log", "--vkey",
                       log.key.vkey)  # fmt: skip
    assert code == 0
    assert "already trusted" in out
    logs = json.loads((data / "logs.json").read_text())["logs"]
    assert logs == {"x.example/log": [log.key.vkey]}


def test_serve_refuses_a_missing_or_exposed_key(tmp_path: Path) -> None:
    data = tmp_path / "w"
    code, _, err = sae("serve", "--data", str(data), "--port", "0")
    assert code == 1
    assert "missing" in err
    assert sae("init", "--data", str(data), "--name", WITNESS_NAME)[0] == 0
    (data / "witness.key").chmod(0o644)
    code, _, err = sae("serve", "--data", str(data), "--port", "0")
    assert code == 1
    assert "0644" in err


def test_sae_witness_serve_cosigns_and_stops_on_sigterm(tmp_path: Path) -> None:
    data, log = tmp_path / "w", Log()
    assert sae("init", "--data", str(data), "--name", WITNESS_NAME)[0] == 0
    assert sae("trust", "--data", str(data), "--origin", ORIGIN, "--vkey", log.key.vkey)[0] == 0
    witness = start_witness(data, via_sae=True)
    try:
        reply = witness.post(log.body(0, 3))
        assert reply.status == 200
        verify_cosignature(Verifier.parse(witness.vkey), log.text(3), reply.text)
    finally:
        assert witness.stop() == 0


def test_a_corrupt_state_is_an_error_never_a_fresh_start(tmp_path: Path) -> None:
    """Reading an unreadable record as "never co-signed" would accept old 0: a rollback."""
    data, log = tmp_path / "w", Log()
    assert run_witness("init", "--data", str(data), "--name", WITNESS_NAME).returncode == 0
    WitnessStore(data).trust(ORIGIN, log.key.verifier)
    witness = start_witness(data)
    try:
        assert witness.post(log.body(0, 3)).status == 200
        (state,) = (data / "state").glob("*.json")
        state.write_text("{not json")
        assert witness.post(log.body(0, 2)).status == 500
        assert witness.post(log.body(3, 4)).status == 500
    finally:
        witness.kill()
