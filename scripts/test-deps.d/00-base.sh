# The end-to-end tests compare against iproute2's view of the machine.
need ip iproute2
