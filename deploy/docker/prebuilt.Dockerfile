# The vitals image from a build made beforehand (`make image` lays out rootfs/ with
# scripts/image-rootfs.sh): nothing but vitals, its plugins and the libraries they load.
# The Dockerfile at the repository's root builds the same image from source.
FROM scratch
COPY rootfs/ /
COPY --chown=10001:10001 state/ /var/lib/vitals/
USER 10001:10001
# Watches the machine mounted at /host (`-v /:/host:ro,rslave`); without that mount it
# reports its own view and says so in /admin/monitor/system (`host_root`).
ENV VITALS_HOST_ROOT=/host \
    VITALS_HISTORY_PATH=/var/lib/vitals/history.db \
    NO_COLOR=1
EXPOSE 9777
ENTRYPOINT ["/usr/bin/vitals"]
CMD ["--config", "/etc/vitals/vitals.toml"]
