//! Process-wide guards against misbehaving in-process plugins: the log keeps a descriptor of its own, and an `exit()` the host did not make is named and turned into a failure.

use std::fs::File;
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// The exit status when something other than the host ends the process (`EX_SOFTWARE`), so
/// that a service manager restarts it even with `Restart=on-failure`.
pub const FOREIGN_EXIT_STATUS: i32 = 70;

static HOST_EXITING: AtomicBool = AtomicBool::new(false);
static LOG_FD: AtomicI32 = AtomicI32::new(2);

/// A close-on-exec duplicate of standard error for the log. A plugin that closes descriptors 1
/// and 2 then cannot make the log write into whatever reuses those numbers (an HTTP socket).
pub fn log_file() -> Option<File> {
    // SAFETY: fcntl on the process's own descriptor 2; the duplicate is owned by the File alone.
    let fd = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3) };
    if fd < 0 {
        return None;
    }
    LOG_FD.store(fd, Ordering::SeqCst);
    // SAFETY: `fd` was just created and is owned by nothing else.
    Some(unsafe { File::from_raw_fd(fd) })
}

/// From now on, an `exit()` that the host did not start (a plugin calling `exit(0)` on its
/// collector thread) writes which thread called it to the log and ends the process with
/// [`FOREIGN_EXIT_STATUS`] instead of the status the plugin chose.
pub fn arm_exit_hook() {
    // SAFETY: registers a plain extern "C" function with no captured state.
    unsafe {
        libc::atexit(on_foreign_exit);
    }
}

/// Marks the exit that follows as the host's own: the hook lets it through.
pub fn host_exits() {
    HOST_EXITING.store(true, Ordering::SeqCst);
}

/// The line the hook writes for an exit made on thread `thread`.
pub fn foreign_exit_message(thread: Option<&str>) -> String {
    match thread.and_then(|t| t.strip_prefix("collector-")) {
        Some(collector) => format!(
            "vitals: the `{collector}` collector's plugin ended the process (exit() on its thread); exiting with status {FOREIGN_EXIT_STATUS}\n"
        ),
        None => format!(
            "vitals: exit() was called outside the host's own shutdown (thread `{}`), most likely by a plugin; exiting with status {FOREIGN_EXIT_STATUS}\n",
            thread.unwrap_or("unnamed")
        ),
    }
}

extern "C" fn on_foreign_exit() {
    if HOST_EXITING.load(Ordering::SeqCst) {
        return;
    }
    let current = std::thread::current();
    let message = foreign_exit_message(current.name());
    let fd = LOG_FD.load(Ordering::SeqCst);
    // SAFETY: write(2) of a live buffer to the log's descriptor, then _exit(2), which runs no
    // further handlers; both are async-signal-safe and valid inside an atexit handler.
    unsafe {
        libc::write(fd, message.as_ptr().cast(), message.len());
        libc::_exit(FOREIGN_EXIT_STATUS);
    }
}

/// The descriptor the log writes to (standard error until [`log_file`] made its own).
pub fn log_fd() -> i32 {
    LOG_FD.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// Guards the hook's words: the collector is named from its thread's name.
    #[test]
    fn foreign_exits_name_the_collector() {
        assert!(foreign_exit_message(Some("collector-gpu"))
            .contains("the `gpu` collector's plugin ended the process"));
        assert!(foreign_exit_message(Some("vitals-rt")).contains("thread `vitals-rt`"));
        assert!(foreign_exit_message(None).contains(&FOREIGN_EXIT_STATUS.to_string()));
    }

    /// Guards the log's descriptor: a duplicate of stderr that a child process does not inherit.
    #[test]
    fn the_log_has_its_own_close_on_exec_descriptor() {
        let f = log_file().expect("dup");
        let fd = f.as_raw_fd();
        assert!(fd > 2);
        // SAFETY: F_GETFD on a descriptor this test owns.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert_ne!(flags & libc::FD_CLOEXEC, 0);
    }
}
