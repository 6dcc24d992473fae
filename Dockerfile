# syntax=docker/dockerfile:1
# rotator as a service: scheduled syncs and key-age checks, the HTTP API and the web page.
#
# Build:  docker build -t rotator .
# Run:    docker run -d --name rotator --stop-timeout 150 -p 127.0.0.1:8700:8700 \
#           -e ROTATOR_API_TOKEN="$(openssl rand -hex 32)" \
#           -v /srv/rotator/plans:/etc/rotator:ro \
#           -v rotator-data:/var/lib/rotator \
#           rotator
#         (or mount a token file and set ROTATOR_API_TOKEN_FILE=/run/secrets/rotator_token)
# Plans are read from /etc/rotator (*.toml); the journal and the scheduler's jobs
# live in SQLite under /var/lib/rotator unless ROTATOR_DB names another database
# (PostgreSQL's driver is installed: ROTATOR_DB=postgresql+psycopg://...).
# The service binds 0.0.0.0 inside the container: publish the port on loopback
# or behind a TLS proxy, as above.  `docker stop` sends SIGTERM: a rotation in
# flight gets up to its deadline + 15 s (135 s by default) to finish, hence
# --stop-timeout 150.  README.md, "Docker", says how credentials reach the container.
#
# Reproducible: both stages start from one base image pinned by digest, and every
# dependency is pinned by deploy/docker/requirements.lock (used as constraints).
# The digest below could not be resolved on the machine this was written on (no
# registry access): it is the python:3.11-slim digest seen in other public
# Dockerfiles, NOT verified here.  Before the first build, check it and pin the
# current one (and again whenever you take the base image's security updates):
#   docker buildx imagetools inspect python:3.11-slim --format '{{json .Manifest.Digest}}'
# docs/deployment/replicas.md says more.

FROM python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7 AS build
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY deploy/docker/requirements.lock ./
COPY rotator ./rotator
COPY plugins ./plugins
# Wheels for rotator, its postgres and kubernetes (deploy/kubernetes/) extras and every
# dependency, at the versions the lock file pins; nothing here needs a compiler.
# requirements.txt names exactly these wheels: the image installs that set.
RUN pip wheel --no-cache-dir --wheel-dir /wheels --constraint requirements.lock '.[postgres,kubernetes]' \
 && printf '%s\n' /wheels/*.whl > /wheels/requirements.txt

FROM python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ROTATOR_DATA_DIR=/var/lib/rotator \
    ROTATOR_PORT=8700
# tini as PID 1 reaps what a `command` consumer's reload leaves behind (a daemonised
# child, a killed process group) and passes SIGTERM on to rotator.  Not pinned: the
# base image's Debian release decides the version, and its security updates apply.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels --requirement /wheels/requirements.txt \
 && groupadd --system --gid 10001 rotator \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/rotator --shell /usr/sbin/nologin rotator \
 && mkdir -p /var/lib/rotator /etc/rotator \
 && chown 10001:10001 /var/lib/rotator \
 && chmod 0700 /var/lib/rotator
# Numeric, so Kubernetes' runAsNonRoot can check it without the image's /etc/passwd.
USER 10001:10001
WORKDIR /var/lib/rotator
VOLUME ["/var/lib/rotator"]
EXPOSE 8700
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('ROTATOR_PORT', '8700'), timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["rotator", "serve", "--host", "0.0.0.0", "--plans", "/etc/rotator"]
