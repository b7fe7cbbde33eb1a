# Multi-stage build of the Sluice worker. librdkafka links the system OpenSSL (libssl-dev in
# the build image, libssl3 at run time) for Event Hubs' SASL_SSL.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p sluice && strip target/release/sluice

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 sluice
COPY --from=build /src/target/release/sluice /usr/local/bin/sluice
COPY pipelines /etc/sluice/pipelines
USER sluice
EXPOSE 9898
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["run", "/etc/sluice/pipelines/compose.toml"]
