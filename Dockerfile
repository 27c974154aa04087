# syntax=docker/dockerfile:1

# Build stage: dev dependencies and the TypeScript compiler stay here.
FROM node:24.21.0-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json tsconfig.browser.json ./
COPY scripts/buildClient.mjs ./scripts/
COPY src ./src
# The server into dist/, and the browser helper (/client.js, /client.d.ts) into dist/browser/.
RUN npm run build

# Runtime stage: production dependencies and the compiled code only, run as the unprivileged "node" user.
FROM node:24.21.0-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY public ./public
COPY bin ./bin
# "token-broker check-config" and "token-broker keys ..." inside the container.
RUN chmod 0755 bin/token-broker.js && ln -s /app/bin/token-broker.js /usr/local/bin/token-broker
USER node
EXPOSE 8080
# The slim image has neither curl nor wget; Node's own fetch probes liveness.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "dist/main.js"]
