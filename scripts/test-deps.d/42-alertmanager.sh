# The alert tests post to a real Alertmanager (its v2 API) that they start on a loopback port;
# Debian's `prometheus-alertmanager` brings it. Its own service is not needed: the tests run it.
need prometheus-alertmanager prometheus-alertmanager
