"""A crash between the storage writes and the catalogue commit leaves nothing visible."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import REPO, Api
from tests.sipfactory import build_zip, simple_sip

CRASHING_INGEST = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from sae.config import load_settings
    from sae.runtime import Runtime
    from sae.auth.service import SYSTEM
    from sae.ingest import service

    def crash(*args, **kwargs):
        # The copies are on the offer and the catalogue rows written in the transaction; the
        # process dies before journaling and committing them.
        os._exit(137)

    service.append_events = crash
    runtime = Runtime.open(load_settings())
    env = service.IngestEnv(settings=runtime.settings, offers=runtime.strategy_offers)
    with runtime.sessions() as session:
        service.ingest(session, env, SYSTEM, Path(sys.argv[1]))
        session.commit()
    sys.exit(0)
    """
)


def test_crash_after_storage_before_commit(api: Api, tmp_path: Path) -> None:
    sip = tmp_path / "sip.zip"
    sip.write_bytes(build_zip(simple_sip("MSG-CRASH")))
    env = {
        **os.environ,
        "SAE_DATA_DIR": str(api.settings.data_dir),
        "SAE_DATABASE_URL": api.settings.db_url,
    }
    result = subprocess.run(
        [sys.executable, "-c", CRASHING_INGEST, str(sip)],
        env=env,
        cwd=REPO,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 137, result.stderr.decode()
    # The copy reached the offer before the crash…
    offer = api.runtime.offer_set.offers["local"]
    orphans = list(offer.list_keys("objects/"))
    assert len(orphans) == 1
    # …but nothing of the transfer is visible, and the orphan is served by no route.
    assert api.client.get("/api/v1/units", headers=api.auth()).json()["items"] == []
    object_id = orphans[0].split("/", 1)[1]
    assert api.client.get(f"/api/v1/objects/{object_id}", headers=api.auth()).status_code == 404
    content = api.client.get(f"/api/v1/objects/{object_id}/content", headers=api.auth())
    assert content.status_code == 404
    # The same SIP can be deposited again and is accepted whole.
    again = api.deposit(sip.read_bytes())
    assert again.status_code == 201, again.text
