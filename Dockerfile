# syntax=docker/dockerfile:1
# aigw: one image for every component (docs/deployment.md).
#
#   docker build -t aigw:local .
#   docker run --rm -p 8080:8080 -p 3000:3000 aigw:local serve --demo --host 0.0.0.0
#   docker run ... aigw:local gateway | config-center | token-service | web
#
# Stages: `web` builds the dashboard (web/ -> src/aigw/web/static, as `make web` does),
# `python` installs the pinned runtime dependencies and the package into /opt/venv, and the
# final stage copies both onto a clean python:3.11-slim, without compilers, npm or pip caches,
# running as an unprivileged user. The runtime dependencies all ship manylinux wheels for
# x86_64 and aarch64, so no compiler is needed in any stage.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:22-bookworm-slim

# --- the web dashboard ------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS web
WORKDIR /build/web
# The lock file first, so that the dependency layer is reused until it changes.
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY web/ ./
# vite writes the bundle to ../src/aigw/web/static, i.e. /build/src/aigw/web/static.
RUN npm run build

# --- the Python package -----------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS python
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements/runtime.txt /tmp/runtime.txt
RUN pip install --only-binary=:all: -r /tmp/runtime.txt
COPY pyproject.toml README.md /build/
COPY src/ /build/src/
RUN pip install --no-deps /build \
    && python -c "import aigw.cli"

# --- the runtime image ------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="aigw" \
      org.opencontainers.image.description="A self-hosted AI gateway in front of OpenAI and Claude" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 aigw \
    && useradd --system --uid 10001 --gid aigw --home-dir /var/lib/aigw \
       --shell /usr/sbin/nologin aigw \
    && mkdir -p /var/lib/aigw \
    && chown aigw:aigw /var/lib/aigw
COPY --from=python /opt/venv /opt/venv
COPY --from=web /build/src/aigw/web/static /opt/aigw/web
COPY deploy/docker/healthcheck.py /usr/local/bin/aigw-healthcheck
# AIGW_HEALTH_URL: what the HEALTHCHECK probes. The gateway's by default; set it to
# http://127.0.0.1:8001/readyz (config-center), :8002/healthz (token-service) or :3000/healthz
# (web) when the container runs another component.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AIGW_DATA_DIR=/var/lib/aigw \
    AIGW_WEB_STATIC_DIR=/opt/aigw/web \
    AIGW_HEALTH_URL=http://127.0.0.1:8080/healthz
WORKDIR /var/lib/aigw
# gateway, config center, token service, web dashboard
EXPOSE 8080 8001 8002 3000
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 10001:10001
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/bin/aigw-healthcheck"]
ENTRYPOINT ["aigw"]
CMD ["serve"]
