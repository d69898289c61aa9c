# syntax=docker/dockerfile:1
#
# warmgate's image. The builder makes a virtual environment holding warmgate and its
# dependencies (and no pip) plus a CycloneDX SBOM of it, written by the tool the sbom-tool stage
# installs; the final stage copies both onto a clean base and adds nothing else: no compiler, no
# package installer.
#
#   docker build -t warmgate:0.1.0 --build-arg VERSION=0.1.0 \
#     --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" --build-arg SOURCE=https://REPO-URL .
#
# BASE_IMAGE names the base of every stage; pin it by digest for a repeatable build
# (--build-arg BASE_IMAGE=python:3.11-slim-bookworm@sha256:...). It must provide python3 with
# venv and pip on PATH, CA certificates, and useradd/groupadd.
#
# The final image runs as the numeric non-root user 65532 and writes nothing outside the status
# directory, so it runs with readOnlyRootFilesystem: true and an emptyDir mounted at /warmgate.
# CI builds this file with buildah and runs the result that way (tests/test_image.py, docs/image.md).

ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS sbom-tool
ARG CYCLONEDX_BOM_VERSION=7.5.0
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# The SBOM tool lives in an environment of its own, so it lists only what the image runs, in a
# stage before the sources, so a rebuild after a code change reuses it.
RUN python3 -m venv /opt/sbom \
    && /opt/sbom/bin/pip install "cyclonedx-bom==${CYCLONEDX_BOM_VERSION}"

FROM sbom-tool AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY warmgate ./warmgate
# warmgate's wheel and a wheel for every dependency, then an offline install of only those into
# an environment without pip: the builder's pip installs into it from outside.
# EXTRAS="[grpc]" adds the gRPC targets' libraries (docs/grpc.md), about 20 MB.
ARG EXTRAS=""
RUN pip wheel --wheel-dir /wheels ".${EXTRAS}"
RUN python3 -m venv --without-pip /opt/warmgate \
    && pip --python /opt/warmgate/bin/python install --no-index --no-cache-dir \
       --find-links /wheels "warmgate${EXTRAS}"
# pglast's parser library (the SQL statement check's) comes with its debug information: 27 MB of
# which the image needs only the 4 MB of code. binutils stays in this stage.
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends binutils \
       >/dev/null \
    && strip --strip-debug /opt/warmgate/lib/python3*/site-packages/pglast/*.so
RUN mkdir /sbom \
    && /opt/sbom/bin/cyclonedx-py environment --pyproject pyproject.toml --mc-type application \
       --output-reproducible --output-format JSON --output-file /sbom/sbom.cdx.json \
       /opt/warmgate/bin/python

FROM ${BASE_IMAGE}
ARG BASE_IMAGE
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
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

# Bytecode was compiled at install time; at run time nothing writes .pyc files, logs go
# straight to stdout, and `serve`/`check`/`cat /warmgate/ready` find the status directory.
# glibc gives threads up to 8 malloc arenas per CPU of the node, and the endpoint runs a thread
# per connection: under a crowd of clients each arena keeps what it freed (10 to 20 MiB more on
# two CPUs, more on bigger nodes), so two arenas are all the processes get.
ENV PATH=/opt/warmgate/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2 \
    WARMGATE_STATUS_DIR=/warmgate

COPY --from=builder /opt/warmgate /opt/warmgate
COPY --from=builder /sbom/sbom.cdx.json /usr/share/doc/warmgate/sbom.cdx.json

# The base's own pip is not needed at run time (the official image keeps it under /usr/local,
# Debian's package under /usr); removing it leaves no installer in the image's file system.
RUN rm -rf /usr/local/bin/pip* /usr/local/lib/python3*/site-packages/pip* \
           /usr/bin/pip* /usr/lib/python3/dist-packages/pip* \
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
