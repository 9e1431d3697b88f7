# syntax=docker/dockerfile:1

# build: a static sluice binary.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/sluice ./cmd/sluice

# local: the same binary beside a shell and the Go toolchain. The local
# runtime runs each service's build and run commands with /bin/sh, which
# the default image below does not have; run this one when sluice itself
# builds and runs the services (docker build --target local .).
FROM golang:1.26 AS local
COPY --from=build /out/sluice /usr/local/bin/sluice
ENV HOME=/tmp \
    SLUICE_DATA=/data \
    SLUICE_LISTEN=0.0.0.0:8080 \
    SLUICE_ROUTER_LISTEN=0.0.0.0:8000
USER 65532:65532
EXPOSE 8080 8000
ENTRYPOINT ["/usr/local/bin/sluice", "serve"]

# The default image: the static binary alone on distroless/static, as the
# nonroot user (65532, the id the manifests/ Deployment runs as).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sluice /usr/local/bin/sluice
ENV SLUICE_DATA=/data \
    SLUICE_LISTEN=0.0.0.0:8080 \
    SLUICE_ROUTER_LISTEN=0.0.0.0:8000
USER 65532:65532
EXPOSE 8080 8000
ENTRYPOINT ["/usr/local/bin/sluice", "serve"]
