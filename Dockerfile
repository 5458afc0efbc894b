# Images by purpose (docs/scale-out.md):
#   docker build -t indexer .                                   the indexer (the default, last target)
#   docker build --target demo-chain -t indexer-demo-chain .    the demo chain of docker-compose.yml
#                                                               (add --platform linux/amd64 off amd64)
# Python dependencies come from the locks in requirements/ (written by scripts/lock; pip checks
# every file against its sha256 and installs wheels only); the npm side from
# scripts/npm/package-lock.json (npm ci). Dependency layers come before the code layers, so a
# code change rebuilds only the last layers (seconds). scripts/image-check builds both images
# without a Docker engine and runs them.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# What both images share: the environment and the user both run as, uid/gid 10001 (numeric in
# USER, so Kubernetes' runAsNonRoot can verify it).
FROM ${PYTHON_IMAGE} AS python-base
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN groupadd --gid 10001 indexer \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /app --shell /usr/sbin/nologin \
      --no-log-init indexer

# ------------------------------------------------------------------------------------ indexer
# The package and its runtime dependencies: no node, no compiler, no test tools, no pip in the
# venv.
FROM python-base AS indexer-base
# Dependencies (changes only with requirements/runtime.txt). The package itself is not
# pip-installed: a .pth file puts /app on the venv's path and /opt/venv/bin/indexer is the console
# script pip would write (the [project.scripts] entry of pyproject.toml). Chain files (chains/)
# and migrations (schema/) are found beside the package, in /app.
COPY requirements/runtime.txt /tmp/requirements.txt
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --quiet --require-hashes --no-deps --only-binary=:all: \
      -r /tmp/requirements.txt \
 && /opt/venv/bin/pip uninstall --quiet --yes pip setuptools \
 && find /opt/venv \( -name '*.c' -o -name '*.pyx' -o -name '*.pxd' \) -delete \
 && rm /tmp/requirements.txt \
 && echo /app >"$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/indexer-app.pth" \
 && printf '#!/opt/venv/bin/python\nimport sys\n\nfrom indexer.ops.cli import main\n\nif __name__ == "__main__":\n    sys.exit(main())\n' \
      >/opt/venv/bin/indexer \
 && chmod 755 /opt/venv/bin/indexer

# --------------------------------------------------------------------------------- demo chain
# anvil (chain id 31337) with the demo system and traffic: `python -m tests.support.devnet`.
# The anvil npm package exists for linux/amd64 only (docker-compose.yml asks for that platform).
# npm (hundreds of Debian packages) lives in the npm-tools stage only; the demo image keeps node
# (solcjs compiles tests/contracts) and the installed node_modules.
FROM python-base AS npm-tools
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY scripts/npm/package.json scripts/npm/package-lock.json scripts/npm/
RUN npm ci --prefix scripts/npm --no-audit --no-fund --loglevel=error --cache /tmp/npm-cache \
 && rm -rf /tmp/npm-cache

FROM python-base AS demo-chain
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs \
 && rm -rf /var/lib/apt/lists/*
COPY requirements/demo.txt /tmp/requirements.txt
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --quiet --require-hashes --no-deps --only-binary=:all: \
      -r /tmp/requirements.txt \
 && /opt/venv/bin/pip uninstall --quiet --yes pip setuptools \
 && rm /tmp/requirements.txt
WORKDIR /app
COPY --from=npm-tools /app/scripts/npm/node_modules ./scripts/npm/node_modules
COPY scripts/npm/package.json scripts/npm/package-lock.json ./scripts/npm/
COPY tests/__init__.py ./tests/
COPY tests/support ./tests/support
COPY tests/contracts ./tests/contracts
# /data: the chain's state (anvil --state), a volume in docker-compose.yml; .cache: solc output.
RUN mkdir -p /data /app/.cache && chown 10001:10001 /data /app/.cache \
 && python -m compileall -q tests
USER 10001:10001
# Compile the demo's TestToken now (cached by input hash), so a start needs no solc run.
RUN python -c "from tests.support.contracts import artifact; artifact('TestToken')" \
 && test -n "$(ls /app/.cache/solc)"
EXPOSE 8545
# The chain's state and its genesis timestamp kept in /data: after a restart it is the same
# chain (same genesis hash, same blocks) and the devnet continues its traffic instead of
# deploying; a new /data is a new chain (a new genesis, refused by an indexer that knew the old).
CMD ["python", "-m", "tests.support.devnet", "--host", "0.0.0.0", "--port", "8545", \
     "--keep-mining", "1", "--state", "/data/state.json"]

# ------------------------------------------------------------------------------------ indexer
FROM indexer-base AS indexer
WORKDIR /app
ENV INDEXER_METRICS_PORT=9464
EXPOSE 9464
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('INDEXER_METRICS_PORT', '9464'), timeout=2)"]
ENTRYPOINT ["indexer"]
CMD ["--help"]
# The code last, and as few steps as possible after it: a code change rebuilds these three.
COPY schema ./schema
COPY chains ./chains
COPY indexer ./indexer
# Byte-code compiled at build time (as root): /app is not writable by the runtime user.
RUN python -m compileall -q indexer && indexer --version
USER 10001:10001
