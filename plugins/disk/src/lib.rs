//! The disk collector (not built yet).
