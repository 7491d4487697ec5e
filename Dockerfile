# syntax=docker/dockerfile:1
# Parley: one image for every service; the service is chosen by the command
# (`docker run parley services.api`, see docker-compose.yml). Default: the all-in-one.
#
# Two stages: `build` installs the pinned dependencies (requirements.lock) into a virtualenv;
# `runtime` copies only that virtualenv and the source, and runs as an unprivileged user.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
COPY requirements.lock /tmp/requirements.lock
# Wheels only: the runtime image has no compiler, and every pinned package ships one for
# CPython 3.11 on linux (checked with `pip install --dry-run --only-binary=:all:`).
RUN /opt/venv/bin/pip install --upgrade pip==26.3 \
 && /opt/venv/bin/pip install --only-binary=:all: -r /tmp/requirements.lock

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="parley" \
      org.opencontainers.image.description="Parley messaging backend (api, realtime, relay, fanout, indexer, cache)"
RUN groupadd --system --gid 10001 parley \
 && useradd --system --uid 10001 --gid parley --home-dir /app --no-create-home --shell /usr/sbin/nologin parley \
 && mkdir -p /data \
 && chown parley:parley /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Source is owned by root and read-only for the service user: a compromised process cannot
# rewrite the code it runs.
COPY parley ./parley
COPY services ./services
COPY web ./web
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PARLEY_HOST=0.0.0.0 \
    PARLEY_PORT=8000 \
    PARLEY_DATA_DIR=/data
USER parley
EXPOSE 8000
# uvicorn turns SIGTERM into a graceful drain (sockets told to reconnect, offsets committed).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=40s --retries=6 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('PARLEY_PORT', '8000'), timeout=3)"]
ENTRYPOINT ["python", "-m"]
CMD ["services.allinone"]
