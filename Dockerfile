# Gantry container: build with the full Node image (g++ and python3 for better-sqlite3), run on
# node:20-slim as the unprivileged "node" user, with the stored objects and index on the /data volume.
FROM node:20-bookworm AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
COPY package.json ./
COPY config ./config
COPY docker/gantry.yaml /etc/gantry/gantry.yaml
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 11112 8080
# The DICOM listener accepts connections (an HTTP /healthz replaces this when it exists).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "require('node:net').connect(11112,'127.0.0.1').on('connect',()=>process.exit(0)).on('error',()=>process.exit(1))"]
ENTRYPOINT ["node", "--max-semi-space-size=2", "dist/src/cli/main.js"]
CMD ["serve", "--config", "/etc/gantry/gantry.yaml"]
