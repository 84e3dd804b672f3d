# syntax=docker/dockerfile:1
# One image for every toolbag role: provider worker, supervisor, simulator, CLI.
#   docker build -t toolbag:0.1.0 .
#   docker run --rm toolbag:0.1.0 toolbag worker --provider anthropic
# The base is pinned by version; pin it by digest too in your registry mirror (python:3.11.14-slim-bookworm@sha256:…).

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: install the package and its dependencies into a self-contained virtualenv ----------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/toolbag
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md constraints.txt policy.yaml tools.yaml ./
COPY skills ./skills
COPY toolbag ./toolbag
COPY workers ./workers
# Every dependency at the version constraints.txt pins: two builds of one commit install the same packages.
# The starter skills, policy.yaml and tools.yaml go inside the package (setup.py), found from any directory.
RUN /opt/toolbag/bin/pip install --no-cache-dir -c constraints.txt ".[all]" \
 && /opt/toolbag/bin/toolbag --help >/dev/null \
 && cd / && /opt/toolbag/bin/toolbag skills list >/dev/null

# --- runtime: the virtualenv, tini as PID 1, a non-root user, nothing else ---------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 toolbag \
 && useradd --system --uid 10001 --gid toolbag --home-dir /home/toolbag --create-home --shell /usr/sbin/nologin toolbag
COPY --from=build /opt/toolbag /opt/toolbag
ENV PATH=/opt/toolbag/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /home/toolbag
USER 10001:10001
EXPOSE 9100 9101 9102 8900
# `toolbag health`: exit 0 when Redis is reachable and the config loads.
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 CMD ["toolbag", "health"]
# tini is PID 1 and forwards SIGTERM to toolbag (not to a shell, not to a process group), so a
# worker gets Celery's warm shutdown: it stops taking jobs and finishes the attempts it holds.
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["toolbag", "--help"]
