"""The deployment's tests: the compose file, the S3 policy, the container entry sequence."""

from __future__ import annotations

from tests.s3_server import ceph_rgw_fixture  # noqa: F401  (the ceph_rgw fixture)
