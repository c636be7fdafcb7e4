//! The `disk` section (filled in by the disk collector's work).
