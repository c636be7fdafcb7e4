//! The `network` section (filled in by the network collector's work).
