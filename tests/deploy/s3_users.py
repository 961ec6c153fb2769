"""Least-privilege S3 users on the test Ceph RGW, holding ``deploy/s3-policy.json`` only.

Each :func:`least_privilege_bucket` makes what ``deploy/minio-init.sh`` makes on a MinIO site:
an Object Lock bucket owned by the administrator, and a user of SAE's own (``radosgw-admin user
create``) allowed the policy's actions on that bucket and nothing else (a bucket policy naming
the user: RGW 16 has no IAM user policies). SAE never owns the bucket, so no owner's right hides
a missing permission.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import boto3

from tests.conftest import require
from tests.s3_server import S3Server

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "deploy" / "s3-policy.json"
#: The statement that grants the governance bypass, needed only with a quarantine.
QUARANTINE_SID = "SaeQuarantine"


@dataclass(frozen=True)
class SaeBucket:
    """A bucket and the keys of the user SAE runs with on it."""

    endpoint: str
    bucket: str
    user: str
    access_key: str
    secret_key: str
    region: str


def policy_for(bucket: str, user: str, *, bypass: Literal["allow", "deny"]) -> dict[str, Any]:
    """``deploy/s3-policy.json`` for ``bucket``, as a bucket policy whose principal is ``user``.

    ``bypass="deny"`` withholds ``s3:BypassGovernanceRetention``. On Ceph RGW 16 leaving the
    statement out is not enough: RGW refuses the bypass to a user only when a statement denies
    it (seen: without an Allow, withdrawals and GOVERNANCE → COMPLIANCE still went through), so
    the statement is turned into a Deny. AWS and MinIO refuse what no statement allows.
    """
    policy: dict[str, Any] = json.loads(POLICY.read_text().replace("SAE_BUCKET", bucket))
    principal = {"AWS": [f"arn:aws:iam:::user/{user}"]}
    statements = []
    for statement in policy["Statement"]:
        statement = {**statement, "Principal": principal}
        if statement["Sid"] == QUARANTINE_SID and bypass == "deny":
            statement["Effect"] = "Deny"
        statements.append(statement)
    policy["Statement"] = statements
    return policy


def admin_client(server: S3Server) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
    )


def least_privilege_bucket(
    server: S3Server, *, bypass: Literal["allow", "deny"] = "allow"
) -> SaeBucket:
    """A new Object Lock bucket and a new RGW user holding only the policy's actions on it."""
    require(
        server.ceph_conf is not None,
        "radosgw-admin needs the cluster's ceph.conf (SAE_TEST_S3_CEPH_CONF with "
        "SAE_TEST_S3_ENDPOINT)",
    )
    suffix = uuid.uuid4().hex[:10]
    user = f"sae-{suffix}"
    access_key, secret_key = f"SAE{suffix.upper()}", secrets.token_urlsafe(24)
    subprocess.run(
        [
            "radosgw-admin",
            "-c",
            str(server.ceph_conf),
            "user",
            "create",
            f"--uid={user}",
            f"--display-name=SAE {suffix}",
            f"--access-key={access_key}",
            f"--secret-key={secret_key}",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    bucket = f"sae-site-{suffix}"
    admin = admin_client(server)
    admin.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    admin.put_bucket_policy(
        Bucket=bucket, Policy=json.dumps(policy_for(bucket, user, bypass=bypass))
    )
    return SaeBucket(server.endpoint, bucket, user, access_key, secret_key, server.region)


def offers_yaml(sites: list[SaeBucket], *, quarantine_days: int) -> tuple[str, dict[str, str]]:
    """An offers file writing to every site (a production strategy), and its credentials."""
    lines = ["offers:"]
    env: dict[str, str] = {}
    for number, site in enumerate(sites, 1):
        prefix = f"SAE_S3_SITE_{number}"
        env[f"{prefix}_ACCESS_KEY"] = site.access_key
        env[f"{prefix}_SECRET_KEY"] = site.secret_key
        lines += [
            f"  - name: site-{number}",
            "    kind: s3",
            f"    endpoint: {site.endpoint}",
            f"    bucket: {site.bucket}",
            f"    access_key_env: {prefix}_ACCESS_KEY",
            f"    secret_key_env: {prefix}_SECRET_KEY",
            f"    region: {site.region}",
            "    jurisdiction: FR",
            f'    site: "Site {number}"',
            f"    quarantine_days: {quarantine_days}",
        ]
    names = ", ".join(f"site-{n}" for n in range(1, len(sites) + 1))
    lines += ["strategy:", f"  copies: [{names}]", "  production: true", ""]
    return "\n".join(lines), env


def versions(server: S3Server, bucket: str) -> list[str]:
    """The keys of every version in ``bucket``, as the administrator lists them."""
    listed = admin_client(server).list_object_versions(Bucket=bucket)
    return [v["Key"] for v in listed.get("Versions", [])]
