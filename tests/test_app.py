"""Health, errors as problem+json, `sae serve` from a fresh data directory, the CLI."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from sae.cli import app as cli
from tests.conftest import REPO, Api


def test_health_names_what_fails(api: Api) -> None:
    ok = api.client.get("/health")
    assert ok.status_code == 200
    body = ok.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True
    assert [o["name"] for o in body["offers"]] == ["local"]
    assert body["offers"][0]["jurisdiction"] == "FR"

    root = api.settings.data_dir / "offers" / "local"
    shutil.rmtree(root)
    root.write_text("not a directory any more")
    broken = api.client.get("/health")
    assert broken.status_code == 503
    assert "offer:local" in broken.json()["failing"]


def test_unknown_route_and_bad_parameters_are_problems(api: Api) -> None:
    missing = api.client.get("/api/v1/nothing-here", headers=api.auth())
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    bad = api.client.get("/api/v1/units?limit=0", headers=api.auth())
    assert bad.status_code == 422
    assert bad.json()["code"] == "request.invalid_parameters"
    unknown_unit = api.client.get("/api/v1/units/nope", headers=api.auth())
    assert unknown_unit.status_code == 404
    assert unknown_unit.json()["code"] == "catalog.unit_not_found"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(tmp_path: Path, port: int, **env: str) -> subprocess.Popen[bytes]:
    """``sae serve`` as a process of its own, its data under ``tmp_path``."""
    full = {
        **os.environ,
        "SAE_DATA_DIR": str(tmp_path / "sae-data"),
        "SAE_PORT": str(port),
        **env,
    }
    full.pop("SAE_OFFERS_FILE", None)
    if not full.get("SAE_DATABASE_URL"):
        full.pop("SAE_DATABASE_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "sae", "serve"],
        cwd=tmp_path,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _healthy(proc: subprocess.Popen[bytes], port: int, seconds: float) -> httpx.Response:
    """The first 200 from /health, within ``seconds``; fails with the output if it dies."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            assert proc.poll() is None, proc.stdout.read().decode()  # type: ignore[union-attr]
        assert time.monotonic() < deadline, f"no healthy answer within {seconds:.0f} s"
        time.sleep(0.3)


def test_sae_serve_first_start(tmp_path: Path) -> None:
    """`sae serve` on a fresh directory answers /health within 30 s and writes the admin token."""
    port = _free_port()
    proc = _serve(tmp_path, port, SAE_DATABASE_URL="")
    try:
        _healthy(proc, port, 30)
        token_file = tmp_path / "sae-data" / "admin.token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        units = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/units",
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        assert units.status_code == 200
        assert (tmp_path / "sae-data" / "sae.db").is_file()
    finally:
        proc.terminate()
        output = proc.communicate(timeout=20)[0].decode()
    assert "admin token" in output
    assert token not in output  # the secret is never printed


def test_cli_token_create_prints_the_token_last(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"SAE_DATA_DIR": str(tmp_path / "d"), "SAE_DATABASE_URL": ""}
    result = runner.invoke(
        cli, ["token", "create", "--role", "depositor", "--producer", "ETAT-CIVIL"], env=env
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1].startswith("sae_")
    refused = runner.invoke(cli, ["token", "create", "--role", "depositor"], env=env)
    assert refused.exit_code == 2
    unknown = runner.invoke(cli, ["token", "create", "--role", "emperor"], env=env)
    assert unknown.exit_code == 2


def test_cli_rules_import_and_refusal(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"SAE_DATA_DIR": str(tmp_path / "d"), "SAE_DATABASE_URL": ""}
    good = tmp_path / "rules.csv"
    good.write_text(
        "RuleId,RuleType,RuleValue,RuleDescription,RuleDuration,RuleMeasurement\n"
        "APP-1,AppraisalRule,Un an,,1,YEAR\n",
        encoding="utf-8",
    )
    result = runner.invoke(cli, ["rules", "import", str(good)], env=env)
    assert result.exit_code == 0, result.output
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "RuleId,RuleType,RuleValue,RuleDescription,RuleDuration,RuleMeasurement\n"
        "APP 1,Nope,,,x,YEAR\n",
        encoding="utf-8",
    )
    refused = runner.invoke(cli, ["rules", "import", str(bad)], env=env)
    assert refused.exit_code == 1
    assert "RuleType" in refused.output
    exported = runner.invoke(cli, ["rules", "export"], env=env)
    assert "APP-1,AppraisalRule" in exported.stdout
    # --dry-run: what would change, nothing written.
    longer = tmp_path / "longer.csv"
    longer.write_text(
        "RuleId,RuleType,RuleValue,RuleDescription,RuleDuration,RuleMeasurement\n"
        "APP-1,AppraisalRule,Deux ans,,2,YEAR\n"
        "APP-3,AppraisalRule,Trois ans,,3,YEAR\n",
        encoding="utf-8",
    )
    dry = runner.invoke(cli, ["rules", "import", "--dry-run", str(longer)], env=env)
    assert dry.exit_code == 0, dry.output
    assert "1 added, 1 changed, 0 removed" in dry.output
    assert "APP-1: 1 YEAR -> 2 YEAR" in dry.output
    assert "nothing written" in dry.output
    after = runner.invoke(cli, ["rules", "export"], env=env)
    assert "APP-3" not in after.stdout
    assert "APP-1,AppraisalRule,Un an,,1,YEAR" in after.stdout


def test_bad_configuration_names_the_variable(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["init"],
        env={"SAE_DATA_DIR": str(tmp_path), "SAE_DATABASE_URL": "mysql://x@y/z"},
    )
    assert result.exit_code == 2
    assert "SAE_DATABASE_URL" in result.output
    missing = runner.invoke(
        cli, ["init"], env={"SAE_DATA_DIR": str(tmp_path), "SAE_OFFERS_FILE": "/nope.yaml"}
    )
    assert missing.exit_code == 2
    assert "SAE_OFFERS_FILE" in missing.output


def test_every_command_has_help_with_an_example() -> None:
    runner = CliRunner()
    for command in (["serve"], ["init"], ["token", "create"], ["rules", "import"]):
        result = runner.invoke(cli, [*command, "--help"])
        assert result.exit_code == 0
        assert "Example" in result.output, command


def test_repo_layout() -> None:
    for path in ("Makefile", "README.md", ".ci/run", "alembic.ini", "docker-compose.yml"):
        assert (REPO / path).exists(), path


def _children(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            lines = status.read_text().splitlines()
        except OSError:
            continue
        if any(line.split()[1:2] == [str(pid)] for line in lines if line.startswith("PPid:")):
            found.append(int(status.parent.name))
    return found


def test_sae_serve_with_two_worker_processes_on_postgresql(tmp_path: Path) -> None:
    """SAE_WORKERS=2: the parent migrates and writes the token once, two processes serve."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.conftest import _open_database
    from tests.sipfactory import build_zip, simple_sip

    db = _open_database("postgresql", tmp_path / "db")
    port = _free_port()
    proc = _serve(tmp_path, port, SAE_DATABASE_URL=db.url, SAE_WORKERS="2")
    base = f"http://127.0.0.1:{port}"
    try:
        _healthy(proc, port, 60)
        assert len(_children(proc.pid)) >= 2  # the worker processes (and uvicorn's helpers)
        token = (tmp_path / "sae-data" / "admin.token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/zip"}

        def deposit(i: int) -> int:
            sip = build_zip(simple_sip(f"MSG-W{i}"))
            return httpx.post(
                f"{base}/api/v1/transfers", content=sip, headers=headers, timeout=60
            ).status_code

        with ThreadPoolExecutor(6) as pool:
            assert list(pool.map(deposit, range(12))) == [201] * 12
        units = httpx.get(f"{base}/api/v1/units?limit=100", headers=headers, timeout=10).json()
        assert len(units["items"]) == 24
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
        db.close()


def test_several_workers_need_a_shared_database(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"SAE_DATA_DIR": str(tmp_path / "d"), "SAE_DATABASE_URL": "sqlite://", "SAE_WORKERS": "2"}
    refused = runner.invoke(cli, ["serve"], env=env)
    assert refused.exit_code == 2
    said = " ".join(refused.output.split())
    assert "SAE_WORKERS=2 needs a database the processes share" in said
    # A SQLite file is shared: several processes take turns to write it.
    from sae.config import load_settings

    settings = load_settings(data_dir=tmp_path / "d", database_url=None, workers=2)
    assert settings.db_url == f"sqlite:///{tmp_path / 'd' / 'sae.db'}"


def test_a_server_process_freezes_its_startup_heap_and_collects_young_objects_less_often() -> None:
    """``sae serve`` calls tune_gc once the application is built (see its docstring)."""
    import gc

    from sae.process import GC_THRESHOLDS, tune_gc

    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
        assert gc.isenabled()  # cycles are still collected
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_a_start_sweeps_what_a_dead_process_left_in_the_spool(tmp_path: Path) -> None:
    """A SIP being received when the process died stays in ``tmp/``; the next start removes
    it once it is a day old, never a younger file (another worker's upload in progress)."""
    from sae.runtime import sweep_spool

    spool = tmp_path / "tmp"
    spool.mkdir()
    old, young = spool / "sip-old.zip", spool / "sip-young.zip"
    old.write_bytes(b"PK" * 1000)
    young.write_bytes(b"PK" * 1000)
    two_days_ago = time.time() - 2 * 86_400
    os.utime(old, (two_days_ago, two_days_ago))
    sweep_spool(spool)
    assert not old.exists()
    assert young.exists()


def test_workers_end_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    """``sae serve`` with two processes on SQLite; SIGKILL to the supervisor alone (the OOM
    killer, an operator's ``kill -9``) stops its workers too: none goes on serving the port
    and writing the database beside the instance started next."""
    import signal

    from tests.crash.harness import ServerProcess, children

    server = ServerProcess(tmp_path / "sae-data", env={"SAE_WORKERS": "2"})
    server.start()
    try:
        workers = children(server.pid)
        assert len(workers) >= 2, workers
        os.kill(server.pid, signal.SIGKILL)
        server.proc.wait(10)  # type: ignore[union-attr]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and [w for w in workers if _alive(w)]:
            time.sleep(0.1)
        assert [w for w in workers if _alive(w)] == []
        with httpx.Client() as client:
            try:
                client.get(f"{server.url}/health", timeout=2)
            except httpx.ConnectError:
                pass
            else:
                raise AssertionError("the port is still served")
    finally:
        server.kill()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "\nState:\tZ" not in status
