# syntax=docker/dockerfile:1
#
# warmgate's image: build wheels in one stage, install only those wheels in a clean slim stage.
#
#   docker build -t warmgate:0.1.0 --build-arg VERSION=0.1.0 \
#     --build-arg REVISION="$(git rev-parse HEAD)" --build-arg SOURCE=https://REPO-URL .
#
# The final image has no compiler and no build tools, runs as the numeric non-root user 65532,
# and writes nothing outside the status directory, so it runs with readOnlyRootFilesystem: true
# and an emptyDir mounted at /warmgate. tests/test_wheel_install.py performs the same steps
# (pip wheel, then an offline install of those wheels into a fresh environment) in CI.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY warmgate ./warmgate
# warmgate's wheel and a wheel for every dependency: the final stage installs offline.
RUN pip wheel --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim-bookworm
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=""
LABEL org.opencontainers.image.title="warmgate" \
      org.opencontainers.image.description="Warm a slow-starting app before Kubernetes sends it traffic, and say when it is measurably ready." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}"

# Bytecode is compiled at install time; at run time nothing writes .pyc files, logs go
# straight to stdout, and `serve`/`check`/`cat /warmgate/ready` find the status directory.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    WARMGATE_STATUS_DIR=/warmgate

RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --no-cache-dir --find-links /wheels warmgate \
    && groupadd --gid 65532 warmgate \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin warmgate \
    && install -d -o 65532 -g 65532 -m 0755 /warmgate \
    && warmgate --version

USER 65532:65532
WORKDIR /warmgate
EXPOSE 8099
ENTRYPOINT ["warmgate"]
CMD ["--help"]
