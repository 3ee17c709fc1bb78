# syntax=docker/dockerfile:1.7
# The creditops image: the decision service (default command), the monitoring worker
# (`creditops worker`) and, in the compose stack, the MLflow tracking server.
#
#   docker build -t creditops:local .
#   docker run --rm -p 8000:8000 -e CREDITOPS_DATABASE_URL=... -e CREDITOPS_MLFLOW_URI=... creditops:local
#
# Two stages: the builder installs the dependency wheels and creditops into a virtual
# environment and trims it (deploy/docker/slim-venv.sh); the runtime stage copies only that
# environment onto a clean python:3.11-slim, runs as an unprivileged user and checks /health.
# Size budget: under 1 GB (see docs/operations.md, "The image").

# Pin by digest for reproducible builds: `python:3.11-slim-bookworm@sha256:<digest>` (the
# digest from `docker buildx imagetools inspect python:3.11-slim-bookworm` or `skopeo
# inspect docker://python:3.11-slim-bookworm`; docs/security.md, "Supply chain").
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ------------------------------------------------------------------------------ builder
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /build
ENV PIP_CACHE_DIR=/var/cache/pip

# Dependencies first, from the hash-pinned runtime lock alone (requirements.lock, made from
# pyproject.toml by `make lock`): this layer (the slow one) is rebuilt only when the lock
# changes, and pip refuses any file whose hash differs from the lock's. The pip cache is a
# BuildKit cache mount, so it never ends up in a layer.
COPY requirements.lock ./
RUN python -m venv /opt/venv
RUN --mount=type=cache,target=/var/cache/pip \
    /opt/venv/bin/pip install --no-compile --require-hashes -r requirements.lock

# Then creditops itself (no dependency resolution: they are all there already).
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN --mount=type=cache,target=/var/cache/pip \
    /opt/venv/bin/pip install --no-compile --no-deps . \
    && /opt/venv/bin/python -c "import creditops.cli, creditops.api.app"

COPY deploy/docker/slim-venv.sh /build/slim-venv.sh
RUN sh /build/slim-venv.sh /opt/venv

# ------------------------------------------------------------------------------ runtime
FROM ${PYTHON_IMAGE} AS runtime

ARG VERSION=0.1.0
ARG VCS_REF=unknown
LABEL org.opencontainers.image.title="creditops" \
      org.opencontainers.image.description="MLOps for credit-risk (PD) models: decision service and monitoring worker" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}"

# LightGBM needs the GNU OpenMP runtime, which the slim image does not have.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

# An unprivileged user with a fixed uid (file ownership on volumes is predictable).
# /var/lib/creditops is CREDITOPS_HOME; its artifacts/ sub-directory is where the compose
# stack mounts the MLflow server's artifact volume (a named volume mounted on an existing
# directory inherits its owner, so the server can write to it).
RUN groupadd --system --gid 10001 creditops \
    && useradd --system --uid 10001 --gid creditops --home-dir /var/lib/creditops \
       --shell /usr/sbin/nologin creditops \
    && install -d -o creditops -g creditops -m 0750 /var/lib/creditops /var/lib/creditops/artifacts

COPY --from=builder /opt/venv /opt/venv
COPY --chmod=0755 deploy/docker/entrypoint.sh /opt/creditops/entrypoint.sh
COPY deploy/docker/healthcheck.py /opt/creditops/healthcheck.py

# Bytecode is not baked in (it would add ~240 MB): it is written on first import under
# PYTHONPYCACHEPREFIX, which the unprivileged user can write.
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONPYCACHEPREFIX=/tmp/pycache \
    MPLCONFIGDIR=/tmp/matplotlib \
    CREDITOPS_HOME=/var/lib/creditops \
    CREDITOPS_SERVE__HOST=0.0.0.0 \
    CREDITOPS_SERVE__PORT=8000

WORKDIR /var/lib/creditops
USER 10001:10001
EXPOSE 8000

# Start-up loads the models from the registry (and compiles bytecode the first time): give
# it a generous start period before failures count.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "/opt/creditops/healthcheck.py"]

ENTRYPOINT ["/opt/creditops/entrypoint.sh"]
CMD ["creditops", "serve", "--host", "0.0.0.0"]
