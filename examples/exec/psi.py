#!/usr/bin/env python3
"""A vitals exec collector: Linux pressure stall information (PSI) from /proc/pressure.

Reads its config table as JSON on stdin, prints one section as JSON on stdout and declares
its chartable series in the answer's `vitals` envelope. Runs as `mode = "oneshot"` (one run
per collect) or `mode = "daemon"` (one process, one request line per collect).

Config keys: `resources` (default ["cpu", "memory", "io"]) and `root` (default "/proc/pressure").
"""
import json
import os
import sys

EX_UNAVAILABLE = 69  # "unavailable": the reason is the first line printed
EX_CONFIG = 78  # "invalid config"
KNOWN = {"cpu", "memory", "io", "irq"}


def configure(config):
    unknown = set(config) - {"resources", "root"}
    if unknown:
        raise ValueError(f"unknown config key(s): {', '.join(sorted(unknown))}")
    resources = config.get("resources", ["cpu", "memory", "io"])
    if not isinstance(resources, list) or not set(resources) <= KNOWN:
        raise ValueError(f"resources must be a list of {', '.join(sorted(KNOWN))}")
    return resources, config.get("root", "/proc/pressure")


def parse_pressure(text):
    """`some avg10=1.00 avg60=… total=…` lines -> {"some_avg10_percent": 1.0, …}."""
    fields = {}
    for line in text.splitlines():
        kind, *pairs = line.split()
        for pair in pairs:
            key, value = pair.split("=", 1)
            if key == "total":  # microseconds stalled since boot
                fields[f"{kind}_total_seconds"] = int(value) / 1e6
            else:
                fields[f"{kind}_{key}_percent"] = float(value)
    return fields


def collect(resources, root):
    items = []
    for name in resources:
        path = os.path.join(root, name)
        try:
            with open(path) as f:
                items.append({"name": name, **parse_pressure(f.read())})
        except FileNotFoundError:
            pass  # irq pressure is newer than the rest
    if not items:
        return {"vitals": {"status": "unavailable",
                           "reason": f"nothing in {root}: the kernel has no PSI (CONFIG_PSI)"}}
    series = [
        {"name": f"{kind}_avg10_percent", "pointer": f"/resources/*/{kind}_avg10_percent",
         "unit": "percent", "label": "name"}
        for kind in ("some", "full")
    ]
    return {"vitals": {"series": series}, "section": {"resources": items}}


def main():
    daemon = os.environ.get("VITALS_MODE") == "daemon"
    try:
        first = sys.stdin.readline() if daemon else sys.stdin.read()
        resources, root = configure(json.loads(first or "{}"))
    except ValueError as e:
        print(e)
        return EX_CONFIG
    if not daemon:
        print(json.dumps(collect(resources, root)))
        return 0
    for _request in sys.stdin:  # one {"op":"collect","seq":N} line per collect
        print(json.dumps(collect(resources, root)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
