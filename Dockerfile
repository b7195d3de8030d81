# syntax=docker/dockerfile:1
# Build:  docker build -t payd .        (needs BuildKit, the default since Docker 23)
# Run:    docker compose --profile app up

# ---- build -------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /build

COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY config ./config

RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/build/target,sharing=locked \
    cargo build --release --locked --bin payd \
 && install -m 0755 target/release/payd /usr/local/bin/payd

# ---- runtime -----------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 payd \
 && useradd --system --uid 10001 --gid payd --home-dir /app --no-create-home --shell /usr/sbin/nologin payd

COPY --from=builder /usr/local/bin/payd /usr/local/bin/payd
WORKDIR /app
COPY --chown=root:root config ./config
COPY --chown=root:root migrations ./migrations

USER payd
ENV PAYD_HTTP__LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["payd"]
CMD ["serve"]
