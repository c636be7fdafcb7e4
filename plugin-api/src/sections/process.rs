//! The `process` section (filled in by the process collector's work).
