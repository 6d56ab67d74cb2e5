# The catalog server for Cloud Run: `python -m service` on $PORT, cleartext HTTP/2, as a non-root user.
#
# The base is a build argument so tests can build on a locally made Debian base (no registry there); every
# stage uses it, because the virtualenv made in the first links to that base's interpreter. The default is
# the Docker Official Image's multi-platform index digest for the tag: bump tag and digest together.
ARG BASE_IMAGE=python:3.12.15-slim-bookworm@sha256:54c85f3c47607a77f32adec749d3c81d1348bf25833671f512b26a9b6d778cb3

FROM ${BASE_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

# Only the server's runtime pins: no code generator, Pulumi or test tools. The installer then leaves the
# venv, so the final image carries no pip or setuptools.
COPY requirements-server.txt /tmp/requirements-server.txt
RUN python -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --no-cache-dir -r /tmp/requirements-server.txt \
    && /opt/venv/bin/python -m pip uninstall --yes --quiet pip setuptools

WORKDIR /app
COPY catalog/ catalog/
COPY service/ service/
# The metric names the server shares with the SLOs and the release (contract/server_metrics.py).
COPY contract/ contract/
# Bytecode now, so a cold start on Cloud Run does not compile; hash-based, so file times cannot stale it.
RUN python -m compileall -q --invalidation-mode unchecked-hash catalog service contract


FROM ${BASE_IMAGE}

# PYTHONUNBUFFERED: each JSON log line reaches Cloud Logging as it is written, not when a buffer fills
# (access lines are written together, at most 20 ms after their call: service/logs.py).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN groupadd --gid 10001 catalog \
    && useradd --uid 10001 --gid catalog --no-log-init --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin catalog

COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
# The official python images ship the standard library without bytecode. Importing the server once here
# writes it for exactly the modules the server loads, instead of compiling them at every cold start.
RUN PYTHONDONTWRITEBYTECODE='' python -c "import service.__main__"

# Numeric, so a platform can tell it is not root without reading /etc/passwd.
USER 10001:10001

# PORT is Cloud Run's to set (8080 unless told otherwise); the server reads it. Exec form: python is PID 1
# and receives SIGTERM itself, which starts the graceful shutdown.
CMD ["python", "-m", "service"]
