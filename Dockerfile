# syntax=docker/dockerfile:1
# SAE's container image (Debian 12 "bookworm"). The wheel is built in a first stage and installed
# in a virtual environment of the second: the image holds no source tree and builds nothing at
# start. docker-compose.yml runs it three ways through deploy/entrypoint.sh: `migrate` (one-shot,
# before anything else), `serve` (the API) and `worker` (the background work).
#
#   docker build -t sae:local .                          # with ClamAV and French OCR
#   docker build -t sae:local --build-arg SCAN_TOOLS=0 . # without (smaller, ~400 MB less)
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
WORKDIR /src
# .dockerignore keeps the venv, data, caches and the git history out of the context.
COPY . .
RUN python -m pip install --no-cache-dir build \
 && python -m build --wheel --outdir /dist

FROM ${PYTHON_IMAGE}
# libmagic1: format identification (python-magic). openssl: the commands proof bundles and
# VERIFY.md use. tini: forwards SIGTERM to SAE so that a stop drains the server and the worker.
# SCAN_TOOLS=1 adds the virus scanner and the French OCR the scans' ingest uses.
ARG SCAN_TOOLS=1
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends libmagic1 openssl tini ca-certificates; \
    if [ "$SCAN_TOOLS" = 1 ]; then \
        apt-get install -y --no-install-recommends clamav-daemon tesseract-ocr-fra ocrmypdf; \
    fi; \
    rm -rf /var/lib/apt/lists/*
# A system user of its own: SAE never runs as root, and owns only its data directory.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/sae --create-home \
        --shell /usr/sbin/nologin sae
COPY --from=builder /dist/ /tmp/dist/
RUN python -m venv /opt/sae \
 && /opt/sae/bin/pip install --no-cache-dir /tmp/dist/sae-*.whl \
 && rm -rf /tmp/dist
COPY deploy/entrypoint.sh /usr/local/bin/sae-entrypoint
ENV PATH=/opt/sae/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SAE_DATA_DIR=/var/lib/sae \
    SAE_HOST=0.0.0.0 \
    SAE_PORT=8000
USER sae
WORKDIR /var/lib/sae
VOLUME ["/var/lib/sae"]
EXPOSE 8000
# /health answers 200 only when the database, every offer and the TSA answer. A worker container
# has no HTTP server: docker-compose.yml disables this check for it.
HEALTHCHECK --interval=15s --timeout=10s --start-period=120s --retries=5 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('SAE_PORT', '8000'), timeout=5)"]
ENTRYPOINT ["tini", "--", "sae-entrypoint"]
CMD ["serve"]
