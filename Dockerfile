# syntax=docker/dockerfile:1
# weir in a container: one image for every role (`weir up|lb|api|worker|migrate`).
#
#   docker build -t weir .
#   docker run --rm -p 8080:8080 weir up --listen 0.0.0.0:8080
#
# Build stage: the pinned toolchain, the `dist` profile (fat LTO, one codegen
# unit: the fastest binary, built once per image). Cargo's registry and
# target directory are BuildKit cache mounts, so a change to weir's code
# rebuilds weir, not its ~400 dependencies — with no list of the workspace's
# crates to keep in step with Cargo.toml.
ARG RUST_VERSION=1.95.0
FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist --locked -p weir \
    && install -D target/dist/weir /out/weir

# Runtime stage: Debian slim, CA certificates, the binary, a non-root user.
FROM docker.io/library/debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/weir --create-home weir
COPY --from=build /out/weir /usr/local/bin/weir
USER 10001:10001
WORKDIR /var/lib/weir
ENV WEIR_DATA_DIR=/var/lib/weir
# The API's port, the lb's; a worker serves probes on WEIR_METRICS_LISTEN.
EXPOSE 8080 8081 9464
# No curl in the image: weir probes itself. WEIR_HEALTH_URL names what to
# probe for the role this container runs (default: `weir up`'s lb).
ENV WEIR_HEALTH_URL=http://127.0.0.1:8080/lb/health/ready
HEALTHCHECK --interval=10s --timeout=4s --start-period=10s --retries=3 \
    CMD ["sh", "-c", "exec weir health \"$WEIR_HEALTH_URL\""]
ENTRYPOINT ["weir"]
CMD ["up", "--listen", "0.0.0.0:8080"]
