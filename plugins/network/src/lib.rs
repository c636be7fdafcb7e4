//! The network collector (not built yet).
