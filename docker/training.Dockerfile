# syntax=docker/dockerfile:1
# The agent/training image: clearml-agent runs the retraining pipeline's controller and steps with TensorFlow.
# Build from the repository root (docs/images.md):
#   docker build -f docker/training.Dockerfile -t occupancy-mlops-training:0.1.0 .
#
# Both stages start from python:3.11-slim-bookworm pinned by digest (tag and digest change together;
# docs/images.md says how to refresh it).

# --- build: /opt/venv with the base dependencies and the [training] group only, at the versions of
# requirements/constraints.txt; wheels only (no compiler in either stage). The code goes to /app,
# on the venv's path through a .pth file, with the `occupancy-mlops` command beside python.
FROM python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91 AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /build
COPY pyproject.toml ./
COPY requirements/constraints.txt requirements/
COPY docker/requirements.py docker/
RUN python docker/requirements.py training > requirements.txt \
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
LABEL org.opencontainers.image.title="occupancy-mlops-training" \
      org.opencontainers.image.description="clearml-agent with the occupancy training code (TensorFlow CPU): runs the retraining pipeline's controller and steps" \
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
# tasks run in this venv's interpreter, where the code already is: no venv, no pip, no git clone
ENV CLEARML_AGENT_SKIP_PYTHON_ENV_INSTALL=1 \
    CLEARML_AGENT_SKIP_PIP_VENV_INSTALL=/opt/venv/bin/python
# no HEALTHCHECK: clearml-agent serves no HTTP; ClearML drops a worker that stops reporting
CMD ["clearml-agent", "daemon", "--queue", "training", "--foreground"]
