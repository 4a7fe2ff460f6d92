# ragq images, built from the same commands as on a host: the build stage runs
# `scripts/install-deps --deb` and `make deb` (debhelper, dh_nginx), and the
# runtime stages install the resulting .deb packages with apt, so the module
# is built against the nginx it runs with (libnginx-mod-http-ragq depends on
# that nginx's nginx-abi-*; apt refuses any other).
#
#   docker build --target nginx  -t ragq-nginx .
#   docker build --target worker -t ragq-worker .
#   docker compose up            # Valkey, Qdrant, nginx + ragq, a worker
#
# Both run as non-root users, log to stdout/stderr and have a healthcheck.
ARG DEBIAN_IMAGE=debian:12.8-slim

FROM ${DEBIAN_IMAGE} AS build
WORKDIR /src
COPY scripts/install-deps scripts/install-deps
# the base image's own packages first: install-deps refuses to upgrade them
# as a side effect (right on a host, in a build stage it is just the start)
RUN apt-get update && apt-get upgrade -y \
    && scripts/install-deps --deb && rm -rf /var/lib/apt/lists/*
COPY . .
RUN make deb

# nginx with the ragq module, listening on 8080.  Valkey's address comes from
# RAGQ_VALKEY (host:port or unix:/path), RAGQ_VALKEY_PASSWORD and RAGQ_PREFIX.
FROM ${DEBIAN_IMAGE} AS nginx
COPY --from=build /src/build/deb/libnginx-mod-http-ragq_*.deb /tmp/debs/
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx curl /tmp/debs/*.deb \
    && rm -rf /var/lib/apt/lists/* /tmp/debs \
    && install -d -o www-data -g www-data -m 0750 /run/ragq-nginx
COPY conf/docker/nginx.conf.template /etc/ragq/nginx.conf.template
COPY conf/docker/entrypoint conf/docker/healthcheck /usr/local/bin/
ENV RAGQ_VALKEY=valkey:6379 RAGQ_PREFIX=ragq
USER www-data
EXPOSE 8080
# SIGQUIT is nginx's graceful shutdown: requests in flight (and long-polls,
# answered with the job's current state) finish.  SIGTERM would cut them.
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/healthcheck", "nginx"]
ENTRYPOINT ["/usr/local/bin/entrypoint"]
CMD ["nginx", "-c", "/run/ragq-nginx/nginx.conf", "-e", "stderr", "-g", "daemon off;"]

# ragq-worker (and ragq-ingest).  Settings are its environment variables
# (see ragq-worker --help), e.g. RAGQ_VALKEY_URL, OPENAI_BASE_URL, QDRANT_URL.
FROM ${DEBIAN_IMAGE} AS worker
COPY --from=build /src/build/deb/ragq-worker_*.deb /tmp/debs/
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates /tmp/debs/*.deb \
    && rm -rf /var/lib/apt/lists/* /tmp/debs \
    && useradd --system --user-group --home-dir /var/lib/ragq --create-home \
        --shell /usr/sbin/nologin ragq
COPY conf/docker/healthcheck /usr/local/bin/
# The worker touches RAGQ_HEALTH_FILE after every heartbeat Valkey took and
# the healthcheck wants it younger than three RAGQ_HEARTBEAT, for every kind
# of RAGQ_VALKEY_URL (bash speaks neither TLS nor Sentinel).
ENV RAGQ_VALKEY_URL=redis://valkey:6379 RAGQ_STORE_PATH=/var/lib/ragq \
    RAGQ_HEALTH_FILE=/tmp/ragq-worker.health
USER ragq
WORKDIR /var/lib/ragq
# SIGTERM: stop claiming, finish jobs in flight within RAGQ_SHUTDOWN_GRACE
# (give `docker stop -t` / stop_grace_period more than that).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/healthcheck", "worker"]
CMD ["ragq-worker"]
