# cc-heartbeat: build with the Rust toolchain the dependencies need (rust-version in
# Cargo.toml), run on a small Debian with CA certificates, as a non-root user.

FROM rust:1.89-bookworm AS builder
# librdkafka builds against the system OpenSSL and zlib, which the runtime image also has.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libssl-dev pkg-config zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the build needs: no secrets, and source edits do not re-fetch dependencies.
COPY Cargo.toml Cargo.lock ./
COPY src src
# Cargo reads every target the manifest declares, the benchmark included, even to build the
# binary alone.
COPY benches benches
COPY scripts scripts
RUN scripts/build-release.sh

FROM debian:bookworm-slim
# ca-certificates: TLS to Confluent Cloud verifies against the system CA bundle out of the box.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin cc-heartbeat \
    && mkdir -p /etc/cc-heartbeat \
    && printf '%s\n' '# Settings come from CC_HEARTBEAT__* variables, or mount your own file here.' \
        > /etc/cc-heartbeat/config.ini
COPY --from=builder /src/target/release/cc-heartbeat /usr/local/bin/cc-heartbeat
COPY config.example.ini /etc/cc-heartbeat/config.example.ini
USER 10001
# glibc gives each thread that allocates its own arena; with librdkafka's many threads that
# multiplies memory the exporter freed but still holds (see the scan benchmark in
# docs/consumer-group-lag.md).
ENV MALLOC_ARENA_MAX=2
EXPOSE 8080
# Mount the configuration at /etc/cc-heartbeat/config.ini; pass secrets as
# CC_HEARTBEAT__DEFAULT__SASL_PASSWORD and friends. Without a file, `--demo` still runs.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["cc-heartbeat", "--config", "/etc/cc-heartbeat/config.ini", "healthcheck"]
ENTRYPOINT ["cc-heartbeat", "--config", "/etc/cc-heartbeat/config.ini"]
CMD []
