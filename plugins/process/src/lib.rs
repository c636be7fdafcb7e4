//! The process collector (not built yet).
