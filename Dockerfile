# The vitals image, built from source: `docker build -t vitals .`
# The result is the same as `make image` (which builds with the local toolchain and pulls
# nothing): FROM scratch with vitals, its plugins and exactly the libraries they load.
# Run it as docs/deploy.md says, e.g.
#   docker run -d --name vitals --pid=host --network=host -v /:/host:ro,rslave \
#     -v /var/run/docker.sock:/var/run/docker.sock:ro \
#     --group-add "$(stat -c %g /var/run/docker.sock)" vitals
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p vitals-host \
        -p vitals-plugin-cpu -p vitals-plugin-memory -p vitals-plugin-system \
        -p vitals-plugin-gpu -p vitals-plugin-disk -p vitals-plugin-network \
        -p vitals-plugin-process -p vitals-plugin-docker \
    && bash scripts/image-rootfs.sh target/release /out/rootfs \
    && mkdir -p /out/state

FROM scratch
COPY --from=build /out/rootfs/ /
COPY --from=build --chown=10001:10001 /out/state/ /var/lib/vitals/
USER 10001:10001
ENV VITALS_HOST_ROOT=/host \
    VITALS_HISTORY_PATH=/var/lib/vitals/history.db \
    NO_COLOR=1
EXPOSE 9777
ENTRYPOINT ["/usr/bin/vitals"]
CMD ["--config", "/etc/vitals/vitals.toml"]
