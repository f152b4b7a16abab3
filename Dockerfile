# syntax=docker/dockerfile:1
# s3dedup-ts image: build with the dev toolchain, run with production dependencies only.
#   docker build -t s3dedup-ts .
#   docker run -p 8080:8080 -v s3dedup-data:/data s3dedup-ts   # SQLite + local disk in /data
#   docker run -v s3dedup-data:/data s3dedup-ts fsck           # any other subcommand

FROM node:20-bookworm-slim AS build
WORKDIR /app
# better-sqlite3 compiles from source when no prebuilt binary matches the platform; npm ci builds
# the libdeflate addon (binding.gyp, native/) with the same toolchain.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json binding.gyp ./
COPY native ./native
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY migrations ./migrations
COPY src ./src
# tsc -> dist/ (dist/src, dist/migrations); then drop the dev dependencies, keeping the native
# modules built above for the same base image.
RUN npm run build && npm prune --omit=dev && npm cache clean --force

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    DATA_DIR=/data \
    LISTEN_ADDRESS=0.0.0.0 \
    LISTEN_PORT=8080
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/build/Release/s3dedup_deflate.node ./build/Release/s3dedup_deflate.node
# The image's unprivileged "node" user (uid 1000) owns only the data directory.
RUN mkdir -p /data && chown node:node /data
USER node
EXPOSE 8080
# No curl in the slim image: node's fetch does the probe.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.LISTEN_PORT||8080)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "--no-concurrent-marking", "--max-semi-space-size=4", "dist/src/cli/main.js"]
CMD ["server", "--env"]
