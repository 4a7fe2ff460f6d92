# ragq on Debian bookworm: the nginx module (for Debian's nginx 1.22.1),
# ragq-worker and ragq-ingest.
#
#   docker build -t ragq .
#   docker run --rm -p 8080:8080 ragq                    # nginx with ragq
#   docker run --rm -e RAGQ_VALKEY_URL=redis://valkey:6379 ragq ragq-worker
FROM debian:bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
        build-essential pkg-config nginx nginx-dev \
        libhiredis-dev libcurl4-openssl-dev libjson-c-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make all

FROM debian:bookworm
RUN apt-get update && apt-get install -y --no-install-recommends \
        nginx libhiredis0.14 libcurl4 libjson-c5 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/ngx_http_ragq_module.so /usr/lib/nginx/modules/
COPY --from=build /src/build/ragq-worker /src/build/ragq-ingest /usr/local/bin/
COPY conf/nginx.conf /etc/nginx/nginx.conf
EXPOSE 8080
CMD ["nginx", "-g", "daemon off;"]
