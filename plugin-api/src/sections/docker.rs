//! The `docker` section (filled in by the docker collector's work).
