# syntax=docker/dockerfile:1
#
# One image for every deployable unit: the binaries of cmd/ in
# /usr/local/bin, no ENTRYPOINT, so the command picks the unit
# (docker-compose.yml: `command: [usersvc]`; Kubernetes: `command: [usersvc]`).
# The default command is the all-in-one platform.
#
#   docker build -t kgrpc-platform .
#   docker run --rm -p 8080:8080 kgrpc-platform            # the whole shop
#   docker run --rm kgrpc-platform gateway --help          # any unit's flags

# Build: cgo is required. confluent-kafka-go bundles a static librdkafka for
# glibc Linux on amd64 and arm64, so gcc (in this image) is all it needs; the
# binaries then link only glibc (libm, libdl, libpthread, librt), which the
# Debian runtime below has. The bundled librdkafka has TLS and SASL
# PLAIN/SCRAM/OAUTHBEARER but no GSSAPI (Kerberos).
FROM golang:1.26-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=1
COPY go.mod go.sum ./
COPY kafkatransport/go.mod kafkatransport/go.sum ./kafkatransport/
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags='-s -w' -o /out/ \
        ./cmd/gateway ./cmd/usersvc ./cmd/productsvc ./cmd/ordersvc \
        ./cmd/platform ./cmd/devkafka ./cmd/bench ./cmd/kgrpc-keys

# Runtime: the same Debian release as the build image (same glibc).
# curl is for health checks (docker-compose.yml probes /readyz with it).
# /keys, owned by the runtime user, is where docker-compose.yml's one-shot
# "keys" service makes the units' keys in a volume (a new volume takes the
# owner of its mount point in the image).
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/kgrpc --shell /usr/sbin/nologin kgrpc \
    && install -d -o kgrpc -g kgrpc /var/lib/kgrpc \
    && install -d -o kgrpc -g kgrpc -m 700 /keys
COPY --from=build /out/ /usr/local/bin/
# The working directory is writable: relative defaults (the services'
# SQLite files under ./data) land here. PLATFORM_* only concern the
# all-in-one platform: listen on every interface and keep its data here.
WORKDIR /var/lib/kgrpc
ENV PLATFORM_HTTP_ADDR=:8080 \
    PLATFORM_DATA_DIR=/var/lib/kgrpc/data
USER 10001:10001
# 8080: the gateway's (and platform's) REST API; 9090: the services'
# /healthz and /readyz.
EXPOSE 8080 9090
CMD ["platform"]
