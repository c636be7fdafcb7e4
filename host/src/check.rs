//! `vitals plugin check PATH`: loads one library and runs its contract (filled in by the plugin-author work).

use std::path::Path;
use std::time::Duration;

/// Checks the plugin at `path`, printing a report to stdout; true when it passes.
pub fn run(path: &Path, deadline: Duration) -> bool {
    match crate::loader::load(path) {
        Ok(p) => {
            println!(
                "{}: plugin `{}` {} (plugin API {}), deadline {}",
                path.display(),
                p.info.name,
                p.info.version,
                p.info.api_version,
                humantime::format_duration(deadline)
            );
            true
        }
        Err(e) => {
            println!("{e}");
            false
        }
    }
}
