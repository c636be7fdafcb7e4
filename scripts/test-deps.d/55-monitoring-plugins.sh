# The exec collector tests run real Nagios checks (check_load, check_disk, check_procs,
# check_dummy) from Debian's monitoring-plugins-basic, and Python collectors.
[ -x /usr/lib/nagios/plugins/check_load ] || apt_install monitoring-plugins-basic
need python3 python3
