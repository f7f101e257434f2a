# syntax=docker/dockerfile:1
# forgejo-mcp-broker with forgejo-mcp, as one image.
#
#   docker build -t forgejo-mcp-broker:0.2.0 .
#   docker build --build-arg FORGEJO_MCP_VERSION=3.0.1 --build-arg FORGEJO_MCP_SHA256=<sha256 of the linux archive> .
#
# The broker is installed exactly as `npm install -g` installs the packed
# tarball (what .ci/package-check.sh tests outside a container), and runs as
# an unprivileged user with its state in the /data volume.

ARG NODE_VERSION=20

# 1. Compile and pack: the same tarball `npm pack` makes.
FROM node:${NODE_VERSION}-bookworm AS pack
WORKDIR /src
COPY package.json package-lock.json ./
# Scripts off: `prepare` would compile before the sources are here, and
# better-sqlite3's native build is only needed where the package is installed.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json README.md CHANGELOG.md LICENSE ./
COPY src ./src
RUN npx tsc -p tsconfig.json && npm pack --ignore-scripts --pack-destination /pkg

# 2. Install the tarball with production dependencies only. This image has
# the compiler better-sqlite3 falls back to when no prebuilt binary fits;
# the runtime image (same Debian release, so the same glibc) does not need it.
FROM node:${NODE_VERSION}-bookworm AS install
COPY --from=pack /pkg/ /pkg/
RUN npm install -g --prefix /opt/forgejo-mcp-broker --no-audit --no-fund /pkg/forgejo-mcp-broker-*.tgz

# 3. forgejo-mcp, the Go MCP server each session runs, from its release
# archives (goreleaser: forgejo-mcp_<version>_linux_<arch>.tar.gz), checked
# against the release's checksum file and, when given, a pinned digest.
FROM node:${NODE_VERSION}-bookworm AS forgejo-mcp
ARG FORGEJO_MCP_VERSION=3.0.1
ARG FORGEJO_MCP_RELEASES=https://codeberg.org/goern/forgejo-mcp/releases/download
ARG FORGEJO_MCP_SHA256=
ARG TARGETARCH=amd64
WORKDIR /tmp/forgejo-mcp
RUN set -eu; \
    archive="forgejo-mcp_${FORGEJO_MCP_VERSION}_linux_${TARGETARCH}.tar.gz"; \
    base="${FORGEJO_MCP_RELEASES}/v${FORGEJO_MCP_VERSION}"; \
    curl -fsSLO "${base}/${archive}"; \
    curl -fsSLO "${base}/forgejo-mcp_${FORGEJO_MCP_VERSION}_checksums.txt"; \
    grep " ${archive}\$" "forgejo-mcp_${FORGEJO_MCP_VERSION}_checksums.txt" | sha256sum -c -; \
    if [ -n "${FORGEJO_MCP_SHA256}" ]; then echo "${FORGEJO_MCP_SHA256}  ${archive}" | sha256sum -c -; fi; \
    tar -xzf "${archive}"; \
    install -D -m 0755 "forgejo-mcp_${FORGEJO_MCP_VERSION}_linux_${TARGETARCH}/forgejo-mcp" /out/forgejo-mcp

# 4. The runtime: Node, the installed broker, forgejo-mcp; nothing to build with.
FROM node:${NODE_VERSION}-bookworm-slim
COPY --from=install /opt/forgejo-mcp-broker /opt/forgejo-mcp-broker
COPY --from=forgejo-mcp /out/forgejo-mcp /usr/local/bin/forgejo-mcp
RUN groupadd --system --gid 10001 broker \
 && useradd --system --uid 10001 --gid broker --home-dir /data --shell /usr/sbin/nologin broker \
 && install -d -o broker -g broker -m 0700 /data
ENV PATH=/opt/forgejo-mcp-broker/bin:$PATH \
    NODE_ENV=production \
    BROKER_LISTEN=0.0.0.0:8080 \
    BROKER_DATA_DIR=/data \
    BROKER_CHILD_COMMAND="forgejo-mcp --transport stdio"
USER broker
WORKDIR /data
# SQLite store and the generated encryption.key (unless BROKER_DATABASE_URL and
# BROKER_ENCRYPTION_KEY are set): back this volume up.
VOLUME /data
EXPOSE 8080
# The slim image has no curl; Node's fetch asks /healthz. Follows BROKER_LISTEN's default port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["forgejo-mcp-broker"]
CMD ["serve"]
