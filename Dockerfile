# Gantry container. Two stages: the build stage has the full Node image because better-sqlite3 may
# compile its native addon (g++, make and python3 are in node:20-bookworm); the run stage is the slim
# image with only the compiled JavaScript and the production node_modules, run as the unprivileged
# "node" user, with the stored objects and the index on the /data volume (storage.path in
# docker/gantry.yaml).
FROM node:20-bookworm AS build
WORKDIR /app
# The lock file first: the npm ci layer is reused as long as the dependencies do not change.
COPY package.json package-lock.json ./
RUN npm ci
# tsconfig.build.json extends tsconfig.json and compiles src/ only (no tests, benchmarks or scripts)
# into dist/src.
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
# better-sqlite3's addon was built in the same Debian release (bookworm), so it loads here.
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
# package.json says "type": "module": without it Node would read dist/ as CommonJS.
COPY package.json ./
# The embedded default config (gantry serve without --config) is read from config/gantry.yaml.
COPY config ./config
# The container's config; docker/compose.yaml mounts the same file over it, so edits apply without a
# rebuild.
COPY docker/gantry.yaml /etc/gantry/gantry.yaml
# The volume's mount point must belong to "node" before VOLUME, or a fresh named volume is root-owned.
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
# 11112: DICOM (dicom.port); 8080: GET /metrics, /healthz, /readyz (http.port).
EXPOSE 11112 8080
# Liveness: the process answers GET /healthz on http.port (8080 in docker/gantry.yaml). A config with
# another http.port, or an http.host other than 0.0.0.0 or 127.0.0.1, sets GANTRY_HEALTHZ_URL to match
# (docker run -e). The slim image has no curl, so Node's own fetch asks. /readyz is not used here: an
# unready Gantry (disk below the floor) must not be restarted, it must be looked at.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.GANTRY_HEALTHZ_URL||'http://127.0.0.1:8080/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# --max-semi-space-size=2: a small young generation collects the receive path's short-lived socket
# buffers sooner; --heap-growing-percent=60 keeps the heaps of import and export near what they hold
# (serve sets V8's own growth back: it receives faster with it). Measured in src/cli/main.ts.
ENTRYPOINT ["node", "--max-semi-space-size=2", "--heap-growing-percent=60", "dist/src/cli/main.js"]
CMD ["serve", "--config", "/etc/gantry/gantry.yaml"]
