# syntax=docker/dockerfile:1
# Repli's container image: replid and repli built in a Rust stage, then run on Debian 12 slim
# as a non-root account, the root file system read-only (compose: `read_only: true`), the state
# in a volume, the health check on /readyz (`replid probe`).
#
# No Docker engine runs on the project's machines: this file is checked by
# `tests/e2e/packaging.rs` (the files and packages it names exist, the configuration it copies
# parses), not built there. See docs/OPERATIONS.md, « Container ».

FROM rust:1.95.0-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p replid -p repli-cli --bins

FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 repli \
 && useradd --system --uid 10001 --gid repli --home-dir /var/lib/repli --shell /usr/sbin/nologin repli \
 && install -d -m 0700 -o repli -g repli /var/lib/repli
COPY --from=build /src/target/release/replid /src/target/release/repli /usr/local/bin/
COPY packaging/docker/replid.toml /etc/repli/replid.toml
ENV REPLI_CONFIG=/etc/repli/replid.toml
USER 10001:10001
WORKDIR /var/lib/repli
VOLUME ["/var/lib/repli"]
EXPOSE 8640
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["replid", "probe"]
ENTRYPOINT ["replid", "--log-format", "json"]
CMD ["run"]
