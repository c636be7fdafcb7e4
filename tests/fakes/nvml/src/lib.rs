//! A stand-in for libnvidia-ml.so (not built yet).
