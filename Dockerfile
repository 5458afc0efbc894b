# The indexer image. The same image also runs the demo chain of docker-compose.yml
# (`python -m tests.support.devnet`), so it carries the test helpers and the pinned npm tooling
# (anvil, solc, contract artifacts); the anvil npm package exists for linux/amd64 only.
FROM --platform=linux/amd64 python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    INDEXER_METRICS_PORT=9464

RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# npm tooling first: it changes rarely, so the layer stays cached.
COPY scripts/npm/package.json scripts/npm/package-lock.json scripts/npm/
RUN npm ci --prefix scripts/npm --no-audit --no-fund --loglevel=error

# Editable install: chain files (chains/) and migrations (schema/) are found beside the package.
COPY pyproject.toml README.md ./
COPY indexer ./indexer
RUN pip install -e '.[test]'
COPY schema ./schema
COPY chains ./chains
COPY tests ./tests

RUN useradd --system --uid 10001 --home-dir /app indexer \
 && mkdir -p /app/.cache /app/.indexer \
 && chown -R indexer /app/.cache /app/.indexer
USER indexer

EXPOSE 9464
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s \
  CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('INDEXER_METRICS_PORT', '9464'), timeout=2)"
CMD ["indexer", "run", "--chain", "anvil"]
