# syntax=docker/dockerfile:1
# urbansense: one image for the stream side of the deployed stack -- the MQTT-to-Kafka
# bridge (`urbansense bridge`), the Faust workers (`python -m stream.app worker`) and
# the operator tools (`urbansense acl`, `urbansense rules check`, ...).
# deploy/docker-compose.yml builds it; by hand: docker build -t urbansense .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ------------------------------------------------------------------- build stage
# Install the project with its `edge` and `stream` extras into a virtual environment,
# which the runtime stage copies whole: no compiler, pip cache or source tree reaches
# it. `edge` too, because the bridge and the workers log through edge_agents.logs
# (structlog), which the `stream` extra alone does not bring.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/urbansense
WORKDIR /src
# The dependencies first, from pyproject.toml alone, so that a change to the code does
# not reinstall them: a stub package stands in for the code in this layer.
COPY pyproject.toml README.md ./
RUN mkdir -p telemetry && touch telemetry/__init__.py \
 && /opt/urbansense/bin/pip install '.[edge,stream]' \
 && /opt/urbansense/bin/pip uninstall -y urbansense
COPY telemetry telemetry
COPY edge_agents edge_agents
COPY simulators simulators
COPY rules rules
COPY stream stream
RUN /opt/urbansense/bin/pip install --no-deps . \
 && /opt/urbansense/bin/python -m compileall -q /opt/urbansense/lib

# ----------------------------------------------------------------- runtime stage
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="urbansense" \
      org.opencontainers.image.description="urbansense stream: MQTT-to-Kafka bridge, Faust workers, operator tools" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed, unprivileged user: the workers' data directory and nothing else is its own.
RUN groupadd --system --gid 10001 urbansense \
 && useradd --system --uid 10001 --gid urbansense --home-dir /var/lib/urbansense \
        --create-home --shell /usr/sbin/nologin urbansense
COPY --from=build /opt/urbansense /opt/urbansense
# Names each bridge replica's MQTT session after the replica (see the script).
COPY deploy/bridge/instance_name.py /usr/local/lib/urbansense/instance_name.py
ENV PATH=/opt/urbansense/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    URBANSENSE_DATADIR=/var/lib/urbansense/stream
USER urbansense
WORKDIR /var/lib/urbansense
# Fail the build, not the deployment, if an entry point does not load.
RUN urbansense --help >/dev/null && python -c "import stream.app.app"
# Each compose service gives its own command: `urbansense bridge ...` or
# `python -m stream.app worker --without-web`.
CMD ["urbansense", "--help"]
