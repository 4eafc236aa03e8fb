# syntax=docker/dockerfile:1
# One image recipe for the four services; the build context is the repository root:
#
#   docker build --build-arg SERVICE=audit -t <registry>/motcua/audit:0.1.0 .
#
# SERVICE is dossier, notify, payment or audit. The image holds only a virtualenv with
# motcua-<SERVICE>, the workspace packages it uses (packages/kit, packages/contracts; dossier
# also packages/documents) and their third-party packages, every one pinned and hashed from
# uv.lock. The build tools (uv,
# hatchling) are pinned and hashed too (docker/build-requirements.txt) and stay in the builder.
# The runtime image has no pip. It runs "python -m motcua_<SERVICE> serve" as uid 10001;
# "migrate" runs the database migrations. Configuration is the MOTCUA_<SERVICE>_* environment
# (set by helm/motcua). See docs/adr/0074-one-dockerfile-pinned-by-digest.md.
#
# The base is pinned by digest, not by tag: a tag moves, a digest does not. Update both halves
# together when rebasing: docker buildx imagetools inspect python:3.11-slim-bookworm
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

# ---- builder: pinned build tools, then the lock's packages, then the workspace's ----
FROM ${PYTHON_IMAGE} AS builder
ARG SERVICE
RUN test -n "${SERVICE}" || { echo "build with --build-arg SERVICE=dossier|notify|payment|audit" >&2; exit 1; }
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY docker/build-requirements.txt /tmp/build-requirements.txt
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --no-deps --require-hashes --requirement /tmp/build-requirements.txt

# Third-party dependencies first: this layer changes only when the lock or a manifest does.
COPY pyproject.toml uv.lock ./
COPY packages/contracts/pyproject.toml packages/contracts/
COPY packages/kit/pyproject.toml packages/kit/
COPY packages/documents/pyproject.toml packages/documents/
COPY services/${SERVICE}/pyproject.toml services/${SERVICE}/
RUN /opt/build/bin/uv export --frozen --package "motcua-${SERVICE}" --no-dev --no-editable \
        --no-emit-workspace --format requirements.txt --output-file /tmp/requirements.txt \
 && python -m venv --without-pip /opt/venv \
 && /opt/build/bin/uv pip install --python /opt/venv/bin/python --no-deps --require-hashes \
        --requirement /tmp/requirements.txt

# Then the service and its workspace packages, built as wheels with the pinned hatchling
# (no build isolation: nothing is fetched unpinned) and installed without their sources.
# packages/documents (the signed forms) only for dossier, the service that issues them.
COPY packages/contracts/ packages/contracts/
COPY packages/kit/ packages/kit/
COPY packages/documents/ packages/documents/
COPY services/${SERVICE}/ services/${SERVICE}/
RUN documents=""; if [ "${SERVICE}" = dossier ]; then documents=./packages/documents; fi \
 && /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheels \
        ./packages/contracts ./packages/kit ${documents} "./services/${SERVICE}" \
 && /opt/build/bin/uv pip install --python /opt/venv/bin/python --no-deps /tmp/wheels/*.whl

# ---- runtime ----
FROM ${PYTHON_IMAGE} AS runtime
ARG SERVICE
LABEL org.opencontainers.image.title="motcua-${SERVICE}" \
      org.opencontainers.image.description="motcua ${SERVICE} service"
# dossier draws the forms with DejaVu Sans (every Vietnamese letter), embedded in each PDF.
RUN if [ "${SERVICE}" = dossier ]; then \
      apt-get update && apt-get install --yes --no-install-recommends fonts-dejavu-core \
      && rm -rf /var/lib/apt/lists/*; \
    fi
# The base image's own pip, setuptools and wheel go: nothing installs at run time.
RUN python -m pip uninstall --yes --quiet pip setuptools wheel \
 && ! python -c "import pip" 2>/dev/null \
 && groupadd --system --gid 10001 motcua \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin motcua
COPY --from=builder /opt/venv /opt/venv
COPY docker/entrypoint.sh /usr/local/bin/motcua-entrypoint
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MOTCUA_SERVICE=${SERVICE}
WORKDIR /app
USER 10001:10001
# gRPC, metrics; 8080: payment's gateway callbacks, notify's delivery receipts.
EXPOSE 50051 9100 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["motcua-entrypoint", "healthcheck"]
ENTRYPOINT ["motcua-entrypoint"]
CMD ["serve"]
