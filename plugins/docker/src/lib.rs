//! The docker collector (not built yet).
