# syntax=docker/dockerfile:1
# cu-reconciler controller image: `cuctl run` as a non-root user, with git for the clone.
# Stage 1 builds a wheel and installs it with its dependencies into a virtualenv;
# stage 2 copies only that virtualenv onto a slim runtime with git and CA certificates.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY reconciler ./reconciler
RUN python -m venv /opt/cu-reconciler \
 && /opt/cu-reconciler/bin/pip install --upgrade pip \
 && /opt/cu-reconciler/bin/pip install '.[controller]'

FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 cu \
 && useradd --uid 65532 --gid 65532 --home-dir /var/cache/cu-reconciler --no-create-home \
      --shell /usr/sbin/nologin cu
COPY --from=build /opt/cu-reconciler /opt/cu-reconciler
ENV PATH=/opt/cu-reconciler/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CU_CACHE_DIR=/var/cache/cu-reconciler
USER 65532:65532
EXPOSE 8080 8443
ENTRYPOINT ["cuctl"]
CMD ["run", "--help"]
