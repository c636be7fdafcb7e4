//! The `gpu` section (filled in by the gpu collector's work).
