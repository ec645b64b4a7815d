# syntax=docker/dockerfile:1
# weir in a container: one image for every role (`weir up|lb|api|worker|migrate`).
#
#   docker build -t weir .
#   docker run --rm -p 8080:8080 weir up --listen 0.0.0.0:8080
#
# Build stage: the pinned toolchain. Dependencies are compiled in a layer of
# their own (from the manifests and lock file alone, with empty sources), so
# a change to weir's code rebuilds weir, not its ~400 dependencies.
ARG RUST_VERSION=1.95.0
FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates/core/Cargo.toml crates/core/
COPY crates/store/Cargo.toml crates/store/
COPY crates/store-sql/Cargo.toml crates/store-sql/build.rs crates/store-sql/
COPY crates/ingest/Cargo.toml crates/ingest/
COPY crates/lb/Cargo.toml crates/lb/
COPY crates/api/Cargo.toml crates/api/
COPY crates/worker/Cargo.toml crates/worker/
COPY crates/cli/Cargo.toml crates/cli/
COPY crates/testkit/Cargo.toml crates/testkit/
COPY crates/bench/Cargo.toml crates/bench/
COPY crates/telemetry/Cargo.toml crates/telemetry/
COPY examples/custom-handler/Cargo.toml examples/custom-handler/
# Empty targets so cargo can resolve the workspace; only dependencies build.
RUN for c in crates/* examples/custom-handler; do \
        mkdir -p "$c/src" "$c/tests/it" && echo "fn main() {}" > "$c/src/main.rs" \
        && touch "$c/src/lib.rs" && echo "fn main() {}" > "$c/tests/it/main.rs"; \
    done && mkdir -p crates/store-sql/migrations/postgres crates/store-sql/migrations/sqlite \
    && cargo build --release --locked -p weir \
    && rm -rf crates examples
COPY crates crates
COPY examples examples
# The real sources are newer than the stubs' outputs: only weir's crates rebuild.
RUN find crates examples -name '*.rs' -exec touch {} + \
    && cargo build --release --locked -p weir \
    && install -D target/release/weir /out/weir

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
