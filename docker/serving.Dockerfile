# syntax=docker/dockerfile:1
# The serving image: clearml-serving's inference app with the occupancy endpoint (numpy; no TensorFlow).
# Build from the repository root (docs/images.md):
#   docker build -f docker/serving.Dockerfile -t occupancy-mlops-serving:0.1.0 .
#
# Both stages start from python:3.11-slim-bookworm pinned by digest (tag and digest change together;
# docs/images.md says how to refresh it).

# --- build: /opt/venv with the base dependencies and the [serving] group only, at the versions of
# requirements/constraints.txt; wheels only (no compiler in either stage). The code goes to /app,
# on the venv's path through a .pth file, with the `occupancy-mlops` command beside python.
FROM python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91 AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /build
COPY pyproject.toml ./
COPY requirements/constraints.txt requirements/
COPY docker/requirements.py docker/
RUN python docker/requirements.py serving > requirements.txt \
    && python -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --no-cache-dir pip==25.3 \
    && /opt/venv/bin/python -m pip install --no-cache-dir --only-binary=:all: \
        -c requirements/constraints.txt -r requirements.txt \
    && echo /app > /opt/venv/lib/python3.11/site-packages/occupancy-mlops-code.pth \
    && python docker/requirements.py --scripts /opt/venv/bin
# the project's three packages (the local ClearML server, a development tool, is a package of its
# own and stays out); compiled once here, since the root filesystem is read-only at run time
COPY occupancy_mlops/ /app/occupancy_mlops/
COPY services/ /app/services/
COPY training/ /app/training/
RUN find /app -name __pycache__ -prune -exec rm -rf {} + \
    && python -m compileall -q --invalidation-mode unchecked-hash /app

# --- runtime
FROM python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="occupancy-mlops-serving" \
      org.opencontainers.image.description="clearml-serving's inference app with the occupancy endpoint, its metrics and feedback (no TensorFlow)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm" \
      org.opencontainers.image.base.digest="sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91"
# a named user with a numeric id (the chart's runAsUser 10001); $HOME and /tmp are the only places
# written to: mount emptyDirs there under a read-only root filesystem
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --no-log-init --create-home --home-dir /home/app \
        --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/home/app \
    USER=app \
    TMPDIR=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /home/app
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u; sys.exit(u.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status != 200)"]
# the launcher execs uvicorn in place (same pid: SIGTERM reaches it); the chart passes its own flags
CMD ["python", "-m", "services.serving", "run", "--host", "0.0.0.0", "--port", "8080"]
