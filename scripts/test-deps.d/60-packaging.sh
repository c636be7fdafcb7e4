# The package tests (tests/tests/package.rs) build the .deb with debhelper and check it with
# lintian; the image tests (tests/tests/image.rs) strip the image's binaries with binutils.
need dh debhelper
need lintian lintian
need strip binutils
