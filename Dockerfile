# Switchyard's container image: the release binary on Debian with the interpreters its
# executors run (Python, PHP, Node.js; JavaScript is built in) and the installers of their
# packages (pip, npm, Composer).
#
#   docker build -t switchyard .
#   docker run -p 8700:8700 -v switchyard-data:/data switchyard
#
# The first start prints the generated instance admin key to the log (`docker logs`), or set
# SWITCHYARD_ADMIN_KEY. Probes: `/healthz` (alive) and `/readyz` (ready, with what the sandbox
# could use). Settings are the same environment variables as for the binary (docs/configuration.md).
#
# The hub runs as root inside the container so that it can put each executor run in its own
# namespaces, new root and cgroup and drop it to a uid of its own (200000-200319). Docker's
# defaults refuse new namespaces: `/readyz` then reports `"namespaces": false` and runs keep the
# other layers (resource limits, own uid, Landlock with the same allowlist, seccomp). For every
# layer, add `--cap-add SYS_ADMIN --security-opt seccomp=unconfined --security-opt
# apparmor=unconfined` and a writable cgroup (`--cgroupns private`, cgroup v2): without cgroups
# Python, PHP and Node.js are refused unless SWITCHYARD_ALLOW_UNBOUNDED_RUNS=true.
#
# Dependencies build in a layer of their own (cargo-chef's recipe: the workspace's manifests and
# lock file, not its sources), so a change to Switchyard's own code rebuilds only its crates:
# `docker build` again after an edit reuses the `cook` layer. This file was not built on the
# machine it was written on (no Docker daemon there); `cargo build --release` of the same
# workspace is what CI checks.

FROM rust:1.95-bookworm AS chef
RUN cargo install --locked cargo-chef@0.1.77
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked -p switchyard \
    && cp target/release/switchyard /usr/local/bin/switchyard

FROM debian:bookworm-slim
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       ca-certificates python3 php-cli nodejs util-linux mount \
       python3-pip npm composer unzip iproute2 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/switchyard /usr/local/bin/switchyard
ENV SWITCHYARD_DATA_DIR=/data \
    SWITCHYARD_LISTEN=0.0.0.0:8700
VOLUME /data
EXPOSE 8700
STOPSIGNAL SIGTERM
ENTRYPOINT ["switchyard"]
CMD ["serve"]
