"""docker-compose.yml, the Dockerfile and deploy/minio-init.sh declare what docs/deploy.md says.

No image can be pulled or built here (no Docker daemon, no ``docker compose`` plugin): the compose
file is validated against the Compose Specification's JSON schema (vendored in ``compose_spec/``,
Apache-2.0) and, where the plugin works, by ``docker compose config`` as well. What the services
run is tested for real by ``test_entrypoint.py`` (the same entry sequence from the wheel).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

from sae.storage.offers import parse_offers
from sae.storage.s3 import S3Offer

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SCHEMA = Path(__file__).parent / "compose_spec" / "compose-spec.json"
SAE_SERVICES = ("migrate", "sae", "worker")


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return data


def _env_example() -> dict[str, str]:
    pairs = {}
    for line in (DEPLOY / "compose.env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs[name] = value
    return pairs


def _documented_services() -> set[str]:
    text = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    section = text.split("## docker compose", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z0-9-]+)` \|", section, flags=re.MULTILINE))


def test_the_file_is_valid_for_the_compose_specification() -> None:
    validator = jsonschema_rs.validator_for(json.loads(SCHEMA.read_text()))
    assert [error.message for error in validator.iter_errors(_compose())] == []
    # The schema does catch a mistake (a misspelt key), so the check above means something.
    broken = _compose()
    broken["services"]["sae"]["depends-on"] = broken["services"]["sae"].pop("depends_on")
    assert not validator.is_valid(broken)


def _docker_compose_works() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, timeout=30, check=False
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _docker_compose_works(), reason="no docker compose plugin here")
def test_docker_compose_config_accepts_it(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    shutil.copy(DEPLOY / "compose.env.example", env)
    checked = subprocess.run(
        ["docker", "compose", "--env-file", str(env), "config", "--quiet"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


def test_services_are_those_documented() -> None:
    services = _compose()["services"]
    assert (
        set(services)
        == _documented_services()
        == {"postgres", "minio-a", "minio-b", "minio-init", "migrate", "sae", "worker"}
    )


def test_start_order_init_steps_first() -> None:
    services = _compose()["services"]
    for name in ("sae", "postgres", "minio-a", "minio-b"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("migrate", "worker"):  # no HTTP server to ask
        assert services[name]["healthcheck"] == {"disable": True}
    assert services["minio-init"]["depends_on"] == {
        "minio-a": {"condition": "service_healthy"},
        "minio-b": {"condition": "service_healthy"},
    }
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["sae"]["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"},
        "minio-init": {"condition": "service_completed_successfully"},
    }
    # The server's first start creates the journal's keys and the admin token the worker uses.
    assert services["worker"]["depends_on"] == {"sae": {"condition": "service_healthy"}}
    for name in ("minio-init", "migrate"):
        assert services[name]["restart"] == "no"


def test_sae_services_run_the_image_through_the_entry_point() -> None:
    services = _compose()["services"]
    for name, command in zip(SAE_SERVICES, ("migrate", "serve", "worker"), strict=True):
        service = services[name]
        assert service["build"] == ".", name
        assert service["image"] == "sae:local", name
        assert service["command"] == [command], name
        env = service["environment"]
        # Migrations are an act: only the migrate step upgrades the schema.
        assert env["SAE_AUTO_MIGRATE"] == "0", name
        assert env["SAE_DATABASE_URL"].startswith("postgresql+psycopg://sae:"), name
        assert "sae-data:/var/lib/sae" in service["volumes"], name
    assert services["sae"]["environment"]["SAE_WORKERS"] == "${SAE_WORKERS:-}"


def test_sae_never_gets_the_minio_root_users() -> None:
    services = _compose()["services"]
    for name in SAE_SERVICES:
        env = services[name]["environment"]
        assert not [k for k, v in env.items() if "MINIO" in k or "MINIO" in str(v)], name
        assert env["SAE_S3_SITE_A_ACCESS_KEY"] == (
            "${SAE_S3_SITE_A_ACCESS_KEY:?set SAE_S3_SITE_A_ACCESS_KEY in .env}"
        )
    # The root users go to the MinIO servers and to the init step that creates SAE's users.
    holders = {
        name
        for name, service in services.items()
        if any("ROOT_PASSWORD" in key for key in service.get("environment", {}))
    }
    assert holders == {"minio-a", "minio-b", "minio-init"}
    init_env = services["minio-init"]["environment"]
    assert {k for k in init_env if k.startswith("SAE_S3_")} == {
        f"SAE_S3_SITE_{site}_{part}_KEY" for site in "AB" for part in ("ACCESS", "SECRET")
    }


def test_every_variable_the_file_reads_is_in_the_env_example() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    example = _env_example()
    assert used == set(example)
    # Required ones (`:?`) have a value in the example; the optional ones may be empty.
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    assert all(example[name] for name in required)


def test_no_secret_in_the_file_and_ports_on_loopback() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    for line in text.splitlines():
        if re.search(r"(PASSWORD|SECRET).*:", line) and "${" not in line:
            assert line.strip().startswith("#"), line
    for name, service in _compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_offers_file_is_production_grade_and_mounted() -> None:
    services = _compose()["services"]
    for name in SAE_SERVICES:
        assert services[name]["environment"]["SAE_OFFERS_FILE"] == "/etc/sae/offers.yaml"
        assert "./deploy/offers.compose.yaml:/etc/sae/offers.yaml:ro" in (services[name]["volumes"])
    secrets = {f"SAE_S3_SITE_{s}_{p}_KEY": "x" for s in "AB" for p in ("ACCESS", "SECRET")}
    offer_set = parse_offers(DEPLOY / "offers.compose.yaml", secrets)
    assert offer_set.production is True
    copies = offer_set.copies()
    assert len(copies) == 2
    assert all(isinstance(o, S3Offer) and o.jurisdiction == "FR" for o in copies)
    assert len({o.site for o in copies}) == 2
    for offer in copies:
        host = offer.endpoint.split("//")[1].split(":")[0]
        assert offer.region == services[host]["environment"]["MINIO_SITE_REGION"]
    assert parse_offers(
        DEPLOY / "offers.example.yaml",
        {"SAE_S3_CLOUD_ACCESS_KEY": "x", "SAE_S3_CLOUD_SECRET_KEY": "y"},
    ).production


def test_dockerfile_builds_the_wheel_and_runs_it_unprivileged() -> None:
    text = (REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)(?: AS (\w+))?$", text, re.M)
    assert stages == [("${PYTHON_IMAGE}", "builder"), ("${PYTHON_IMAGE}", "")]
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in text
    assert "python -m build --wheel --outdir /dist" in text
    assert "COPY --from=builder /dist/ /tmp/dist/" in text
    assert "pip install --no-cache-dir /tmp/dist/sae-*.whl" in text
    for package in ("libmagic1", "openssl", "tini", "clamav-daemon", "tesseract-ocr-fra"):
        assert re.search(rf"apt-get install .*\b{package}\b", text), package
    # Only the builder stage sees the sources; the image gets the wheel and the entry point.
    final = text.split("\nFROM ${PYTHON_IMAGE}\n", 1)[1]
    assert re.findall(r"^COPY (?!--from=builder)(.*)$", final, re.M) == [
        "deploy/entrypoint.sh /usr/local/bin/sae-entrypoint"
    ]
    assert re.search(r"^USER sae$", final, re.M)
    assert "/health" in final.split("HEALTHCHECK", 1)[1]
    assert 'ENTRYPOINT ["tini", "--", "sae-entrypoint"]' in final
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".env", "sae-data"} <= set(ignored)


def test_minio_init_creates_locked_buckets_and_least_privilege_users(tmp_path: Path) -> None:
    """deploy/minio-init.sh, run with bash against a stand-in for ``mc`` that records its
    arguments (and the policy files it is given): the commands and the policies it would send."""
    bash = shutil.which("bash")
    assert bash is not None
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.jsonl"
    (bin_dir / "mc").write_text(
        "#!/usr/bin/env python3\n"
        "import json, os, sys\n"
        "args = sys.argv[1:]\n"
        "policy = open(args[5]).read() if args[:3] == ['admin', 'policy', 'create'] else None\n"
        "with open(os.environ['MC_CALLS'], 'a') as log:\n"
        "    log.write(json.dumps({'args': args, 'policy': policy}) + '\\n')\n"
        "if args[:2] == ['version', 'info']:\n"
        "    print(args[2] + ' versioning is enabled')\n"
    )
    (bin_dir / "mc").chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "MC_CALLS": str(calls),
        "POLICY_TEMPLATE": str(DEPLOY / "s3-policy.json"),
        **{k: v for k, v in _env_example().items() if k.startswith(("MINIO_", "SAE_S3_"))},
    }
    ran = subprocess.run(
        [bash, str(DEPLOY / "minio-init.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    recorded = [json.loads(line) for line in calls.read_text().splitlines()]
    commands = [" ".join(call["args"]) for call in recorded]
    offers = yaml.safe_load((DEPLOY / "offers.compose.yaml").read_text())["offers"]
    template = (DEPLOY / "s3-policy.json").read_text()
    for alias, offer in zip("ab", offers, strict=True):
        bucket, region, site = offer["bucket"], offer["region"], alias.upper()
        user = env[offer["access_key_env"]]
        assert f"mb --ignore-existing --with-lock --region {region} {alias}/{bucket}" in commands
        assert f"admin user add {alias} {user} {env[offer['secret_key_env']]}" in commands
        assert f"admin policy attach {alias} sae-{bucket} --user {user}" in commands
        root = f"alias set {alias} http://minio-{alias}:9000 {env[f'MINIO_{site}_ROOT_USER']}"
        assert any(c.startswith(root) for c in commands)
        created = [c for c in recorded if c["args"][:4] == ["admin", "policy", "create", alias]]
        assert [c["args"][4] for c in created] == [f"sae-{bucket}"]
        assert json.loads(created[0]["policy"]) == json.loads(
            template.replace("SAE_BUCKET", bucket)
        )
    # Without a variable it stops before touching anything, naming it.
    del env["SAE_S3_SITE_B_SECRET_KEY"]
    calls.unlink()
    refused = subprocess.run(
        [bash, str(DEPLOY / "minio-init.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 1
    assert "SAE_S3_SITE_B_SECRET_KEY is not set" in refused.stderr
    assert not calls.exists()
