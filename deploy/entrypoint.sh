#!/bin/sh
# SAE's entry point: the container's (Dockerfile ENTRYPOINT) and the one the systemd units and
# tests/deploy/test_entrypoint.py run, so that what is tested is what the containers do.
#
#   entrypoint.sh migrate    bring the database schema to this version, then exit (init step)
#   entrypoint.sh serve      the HTTP API; SAE_WORKERS processes (default: one per core)
#   entrypoint.sh worker     the background work alone (sealing, audits, quarantines, drills)
#   entrypoint.sh sae ARGS   any other sae command, e.g. `sae token create --role archivist`
#
# Every setting comes from the environment (SAE_*, see docs/deploy.md).
set -eu

# The sae of the image's virtual environment, or the one on PATH (SAE_BIN overrides).
SAE_BIN="${SAE_BIN:-sae}"

usage() {
    echo "usage: $0 migrate|serve|worker|sae [ARGS...]" >&2
    exit 64
}

# An empty SAE_WORKERS (compose's `${SAE_WORKERS:-}`, an env file's `SAE_WORKERS=`) means "not
# set": the default below, and no empty number for SAE's settings to refuse.
if [ -z "${SAE_WORKERS:-}" ]; then
    unset SAE_WORKERS
fi

command="${1:-serve}"
[ "$#" -gt 0 ] && shift

case "$command" in
migrate)
    exec "$SAE_BIN" migrate upgrade "$@"
    ;;
serve)
    if [ -z "${SAE_WORKERS:-}" ]; then
        # One Python process uses one core at most: one per core on a shared database. The
        # embedded SQLite default takes a single process (SAE refuses more).
        case "${SAE_DATABASE_URL:-sqlite}" in
        sqlite*) SAE_WORKERS=1 ;;
        *) SAE_WORKERS=$(nproc) ;;
        esac
        # SAE accepts at most 32 server processes.
        [ "$SAE_WORKERS" -gt 32 ] && SAE_WORKERS=32
    fi
    export SAE_WORKERS
    exec "$SAE_BIN" serve --host "${SAE_HOST:-0.0.0.0}" --port "${SAE_PORT:-8000}" \
        --workers "$SAE_WORKERS" "$@"
    ;;
worker)
    exec "$SAE_BIN" worker "$@"
    ;;
sae)
    exec "$SAE_BIN" "$@"
    ;;
*)
    usage
    ;;
esac
