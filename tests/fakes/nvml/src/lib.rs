//! A test-only stand-in for `libnvidia-ml.so`: the NVML C functions the gpu plugin calls, with scripted boards (see `boards`).
//!
//! `boards` holds the scenarios (`VITALS_FAKE_NVML_BOARDS`), `core` the functions every driver
//! generation exports, `newer` those drivers before R510/R525 lack, and `events` the event set
//! API with XID errors a test triggers. The example `nvidia_ml_legacy` builds the same library
//! without `newer`, as an old driver (or one whose newer symbols are missing) would be.
//! The scripted values are repeated in the tests that read them (`tests/tests/gpu*.rs`).

mod boards;
mod core;
mod events;
mod newer;
