# syntax=docker/dockerfile:1
# rotator as a service: scheduled syncs and key-age checks, the HTTP API and the web page.
#
# Build:  docker build -t rotator .
# Run:    docker run -d --name rotator -p 127.0.0.1:8700:8700 \
#           -e ROTATOR_API_TOKEN="$(openssl rand -hex 32)" \
#           -v /srv/rotator/plans:/etc/rotator:ro \
#           -v rotator-data:/var/lib/rotator \
#           rotator
#         (or mount a token file and set ROTATOR_API_TOKEN_FILE=/run/secrets/rotator_token)
# Plans are read from /etc/rotator (*.toml); the journal and the scheduler's jobs
# live in SQLite under /var/lib/rotator unless ROTATOR_DB names another database.
# The service binds 0.0.0.0 inside the container: publish the port on loopback
# or behind a TLS proxy, as above.  `docker stop` sends SIGTERM: a rotation in
# flight finishes first (give it time: `docker stop -t 150`).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY rotator ./rotator
COPY plugins ./plugins
# Wheels for rotator, its kubernetes extra (deploy/kubernetes/) and every dependency;
# nothing here needs a compiler.
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[kubernetes]"

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ROTATOR_DATA_DIR=/var/lib/rotator \
    ROTATOR_PORT=8700
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels "rotator[kubernetes]" \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/rotator --shell /usr/sbin/nologin rotator \
 && mkdir -p /var/lib/rotator /etc/rotator \
 && chown rotator:rotator /var/lib/rotator \
 && chmod 0700 /var/lib/rotator
USER rotator
WORKDIR /var/lib/rotator
VOLUME ["/var/lib/rotator"]
EXPOSE 8700
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('ROTATOR_PORT', '8700'), timeout=4)"]
STOPSIGNAL SIGTERM
CMD ["rotator", "serve", "--host", "0.0.0.0", "--plans", "/etc/rotator"]
