# The disk, network and process end-to-end tests compare with util-linux, coreutils, procps and iproute2.
need findmnt util-linux
need df coreutils
need ps procps
need ip iproute2
