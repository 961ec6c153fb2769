"""The example of docs/seda.md runs, on an accepted and on a refused SIP."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import seda

DOC = Path(__file__).resolve().parents[2] / "docs" / "seda.md"


@pytest.mark.parametrize(
    ("sample", "reply_code"),
    [
        ("seda2.1-itests-OK_SIP_2_GO.zip", "OK"),
        ("seda2.1-itests-KO_CYCLE.zip", "KO"),
        ("seda2.1-itests-KO_BORD_xmlKO_sansobjet.zip", "KO"),
    ],
)
def test_doc_example_runs(
    sample: str,
    reply_code: str,
    samples_dir: Path,
    xsd_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    match = re.search(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert match
    code = match.group(1).replace('"sip.zip"', repr(str(samples_dir / sample)))
    namespace: dict[str, object] = {}
    exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation
    atr = namespace["atr_xml"]
    assert isinstance(atr, bytes)
    assert seda.validate_message(atr, xsd_dir, expected="ArchiveTransferReply") == []
    assert seda.read_transfer_reply(atr).reply_code == reply_code
    capsys.readouterr()
