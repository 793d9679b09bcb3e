# Service image: `telematics run` (gateway, HTTP API, background jobs).
# Point it at real services with TELEMATICS_DATABASE_URL and TELEMATICS_MQTT_URL; without them
# it starts its embedded defaults, which suit a trial, not production.
# The web console's browser libraries, from the npm registry by the lock file (never a CDN).
FROM node:20-slim AS console
WORKDIR /src
COPY console/package.json console/package-lock.json ./console/
COPY scripts/build-console ./scripts/
RUN mkdir -p src/telematics/console/static && scripts/build-console

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY --from=console /src/src/telematics/console/static/vendor ./src/telematics/console/static/vendor
COPY migrations ./migrations
COPY simulators ./simulators
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --create-home --home-dir /var/lib/telematics telematics
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER telematics
WORKDIR /var/lib/telematics
ENV TELEMATICS_HTTP_HOST=0.0.0.0 \
    TELEMATICS_HTTP_PORT=8080 \
    TELEMATICS_DATA_DIR=/var/lib/telematics
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status != 200)"
STOPSIGNAL SIGTERM
ENTRYPOINT ["telematics"]
CMD ["run"]
