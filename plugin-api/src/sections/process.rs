//! The `process` section: process totals and the top processes by CPU and by memory (from the process collector).

use serde::{Deserialize, Serialize};

/// The `process` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessStats {
    /// Processes (thread groups) on the machine.
    pub process_count: u64,
    /// Threads (kernel scheduling entities) on the machine.
    pub thread_count: u64,
    /// Processes in the zombie state (exited, not yet reaped by their parent).
    pub zombie_count: u64,
    /// Threads running or ready to run (state R), counted as `top` does: a process with
    /// several busy threads counts once per running thread.
    pub running_count: u64,
    /// The processes using the most CPU since the previous collect, busiest first.
    pub top_by_cpu: Vec<ProcessInfo>,
    /// The processes with the largest resident memory, largest first.
    pub top_by_memory: Vec<ProcessInfo>,
    /// Zombie processes (at most as many as the top lists hold), lowest PID first.
    #[serde(default)]
    pub zombies: Vec<ProcessInfo>,
}

/// One process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// The process id.
    pub pid: u32,
    /// The parent's process id, when it has one.
    pub parent_pid: Option<u32>,
    /// The process name (the kernel's `comm`, at most 15 bytes).
    pub name: String,
    /// The name of the real user that owns it (the numeric uid when it has no name).
    pub user: Option<String>,
    /// CPU used since the previous collect; 100 is one logical CPU fully busy.
    pub cpu_percent: f32,
    /// `memory_bytes` as a share of installed RAM.
    pub memory_percent: f64,
    /// Resident memory (RSS).
    pub memory_bytes: u64,
    /// `running`, `sleeping`, `disk_sleep`, `stopped`, `tracing_stop`, `zombie`, `dead`, `idle`, …
    pub status: String,
    /// The command line, arguments joined by spaces, cut to 100 characters (the name in
    /// brackets when the kernel gives none, as for kernel threads and zombies).
    pub command: String,
    /// When it started, as seconds since the Unix epoch.
    pub start_time_unix_seconds: u64,
}
