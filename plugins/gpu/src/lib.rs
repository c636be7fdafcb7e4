//! The gpu collector (not built yet).
