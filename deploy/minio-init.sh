#!/bin/bash
# One-shot initialisation of docker-compose.yml's two MinIO sites, run by the `minio-init`
# service in the minio/mc image (bash and mc). Safe to run again (every step is idempotent).
#
# For each site:
#   1. the bucket, with Object Lock (which turns versioning on) in the site's region: Object Lock
#      can only be chosen when a bucket is created, hence a step of its own, before SAE starts;
#      no default retention, since SAE locks each version itself once it has read it back;
#   2. the policy of deploy/s3-policy.json, its SAE_BUCKET placeholder replaced by the bucket;
#   3. SAE's own user with that policy alone. SAE is given this user's keys, never the root
#      user's, which only this step and the MinIO servers know.
set -euo pipefail

POLICY_TEMPLATE="${POLICY_TEMPLATE:-/deploy/s3-policy.json}"

need() {
    if [ -z "${!1:-}" ]; then
        echo "minio-init: $1 is not set (see deploy/compose.env.example)" >&2
        exit 1
    fi
}

# site ALIAS URL ROOT_USER ROOT_PASSWORD BUCKET REGION SAE_USER SAE_SECRET
site() {
    local alias=$1 url=$2 root_user=$3 root_password=$4 bucket=$5 region=$6 user=$7 secret=$8
    local policy="sae-$bucket" policy_file="/tmp/sae-policy-$bucket.json" template
    mc alias set "$alias" "$url" "$root_user" "$root_password" >/dev/null
    mc mb --ignore-existing --with-lock --region "$region" "$alias/$bucket"
    mc version info "$alias/$bucket" | grep -q enabled
    template=$(<"$POLICY_TEMPLATE")
    printf '%s\n' "${template//SAE_BUCKET/$bucket}" >"$policy_file"
    mc admin policy create "$alias" "$policy" "$policy_file"
    mc admin user add "$alias" "$user" "$secret"
    # A second run finds the policy already attached, which mc reports as an error.
    mc admin policy attach "$alias" "$policy" --user "$user" ||
        mc admin policy entities "$alias" --user "$user" | grep -q "$policy"
    echo "minio-init: $alias/$bucket ($region) ready for user $user (policy $policy)"
}

for variable in MINIO_A_ROOT_USER MINIO_A_ROOT_PASSWORD MINIO_B_ROOT_USER MINIO_B_ROOT_PASSWORD \
    SAE_S3_SITE_A_ACCESS_KEY SAE_S3_SITE_A_SECRET_KEY SAE_S3_SITE_B_ACCESS_KEY \
    SAE_S3_SITE_B_SECRET_KEY; do
    need "$variable"
done

site a http://minio-a:9000 "$MINIO_A_ROOT_USER" "$MINIO_A_ROOT_PASSWORD" sae-site-a fr-site-a \
    "$SAE_S3_SITE_A_ACCESS_KEY" "$SAE_S3_SITE_A_SECRET_KEY"
site b http://minio-b:9000 "$MINIO_B_ROOT_USER" "$MINIO_B_ROOT_PASSWORD" sae-site-b fr-site-b \
    "$SAE_S3_SITE_B_ACCESS_KEY" "$SAE_S3_SITE_B_SECRET_KEY"
