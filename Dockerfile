# syntax=docker/dockerfile:1
#
# The esc-operator image, for Docker, Podman or Buildah:
#
#   docker build -t esc-operator .
#
# Two stages: `builder` compiles the release binary, `runtime` is the image users run.
#
# The project's own build (tools/image/build.sh) uses this same file and builds only the `runtime`
# stage: it compiles the binary on the host, then replaces the `builder` stage with a directory
# that holds it (`--build-context builder=DIR`, where DIR/usr/local/bin/esc-operator is the binary;
# Docker Buildx and Buildah both let a named context stand in for a stage of that name) and
# points RUNTIME_BASE at a base built locally with mmdebstrap from the same Debian packages as the
# default base. So what CI tests is this runtime stage, line for line.

# The runtime base: a minimal Debian 12 (bookworm) with libc6, libgcc-s1, ca-certificates and
# tzdata, and a `nonroot` user 65532. The builder below is bookworm too, so the binary's glibc
# requirement is met.
ARG RUNTIME_BASE=gcr.io/distroless/cc-debian12:nonroot

FROM docker.io/library/rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# The cache mounts keep the crate registry and the target dir between builds; the binary is copied
# out of the cached target dir in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin esc-operator \
    && install -D -m 0755 target/release/esc-operator /usr/local/bin/esc-operator

FROM ${RUNTIME_BASE} AS runtime
# Keep VERSION equal to the workspace version in Cargo.toml (tools/image/check.sh verifies it);
# the project's build passes it, REVISION and the creation time explicitly.
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="esc-operator" \
      org.opencontainers.image.description="Kubernetes operator for Cisco Elastic Services Controller maintenance, backup and restore" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/esc-operator/esc-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /usr/local/bin/esc-operator /usr/local/bin/esc-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/esc-operator"]
