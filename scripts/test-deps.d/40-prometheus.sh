# The fleet tests validate deploy/ with promtool (config, alert rules and their unit tests)
# and scrape the host with a real Prometheus; Debian's `prometheus` brings both.
need promtool prometheus
# The same tests check deploy/systemd/vitals.service with `systemd-analyze verify`.
need systemd-analyze systemd
