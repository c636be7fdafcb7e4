//! The fake `libnvidia-ml.so` of a driver before R510: without `nvmlDeviceGetMemoryInfo_v2`, the `_v3` process calls, JPEG and OFA utilization.

#[path = "../src/boards.rs"]
mod boards;
#[path = "../src/core.rs"]
mod core;
#[path = "../src/events.rs"]
mod events;
