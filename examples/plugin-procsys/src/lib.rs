//! Example out-of-tree collector: kernel entropy and open file handles, read from /proc/sys.

use std::path::{Path, PathBuf};

use vitals_plugin_api::prelude::*;

/// The `[collectors.procsys.config]` table.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Log a warning when open file handles exceed this share of the maximum (percent).
    pub warn_open_files_percent: f64,
    /// Root of the sysctl tree (test-only; default `/proc/sys`).
    pub root: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            warn_open_files_percent: 90.0,
            root: PathBuf::from("/proc/sys"),
        }
    }
}

/// The `procsys` section.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcSysStats {
    /// Entropy the kernel's random pool holds (bits).
    pub entropy_available_bits: u64,
    /// Size of the kernel's random pool (bits).
    pub entropy_pool_size_bits: u64,
    /// File handles the kernel has allocated and in use.
    pub open_files: u64,
    /// The system-wide limit on file handles (`fs.file-max`).
    pub max_files: u64,
    /// `open_files` as a share of `max_files` (percent).
    pub open_files_percent: f64,
}

/// Reads /proc/sys on every collect; it keeps no state but its config.
pub struct ProcSysCollector {
    config: Config,
    warned: bool,
}

/// Parses a sysctl file that holds one unsigned number, e.g. `kernel/random/entropy_avail`.
pub fn parse_number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// Parses `fs/file-nr` (`allocated  unused  max`) into (open, max).
pub fn parse_file_nr(text: &str) -> Option<(u64, u64)> {
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    let allocated = fields.next()?.ok()?;
    let unused = fields.next()?.ok()?;
    let max = fields.next()?.ok()?;
    Some((allocated.saturating_sub(unused), max))
}

fn read(root: &Path, file: &str) -> Result<String, Error> {
    let path = root.join(file);
    std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        // No such sysctl here (another OS, a restricted container): a normal state.
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
            Error::unavailable(format!("cannot read {}: {e}", path.display()))
        }
        _ => Error::failed(format!("reading {}: {e}", path.display())),
    })
}

fn read_number(root: &Path, file: &str) -> Result<u64, Error> {
    let text = read(root, file)?;
    parse_number(&text).ok_or_else(|| {
        Error::failed(format!(
            "{}: expected a number, found {:?}",
            root.join(file).display(),
            text.trim()
        ))
    })
}

impl Collector for ProcSysCollector {
    const NAME: &'static str = "procsys";
    const DESCRIPTION: &'static str = "Kernel entropy and open file handles from /proc/sys";
    type Config = Config;
    type Section = ProcSysStats;

    fn new(config: Config) -> Result<Self, Error> {
        if !(0.0..=100.0).contains(&config.warn_open_files_percent) {
            return Err(Error::invalid_config(format!(
                "warn_open_files_percent must be between 0 and 100, not {}",
                config.warn_open_files_percent
            )));
        }
        Ok(Self {
            config,
            warned: false,
        })
    }

    fn collect(&mut self) -> Result<ProcSysStats, Error> {
        let root = &self.config.root;
        let entropy_available_bits = read_number(root, "kernel/random/entropy_avail")?;
        let entropy_pool_size_bits = read_number(root, "kernel/random/poolsize")?;
        let text = read(root, "fs/file-nr")?;
        let (open_files, max_files) = parse_file_nr(&text).ok_or_else(|| {
            Error::failed(format!(
                "{}: expected three numbers, found {:?}",
                root.join("fs/file-nr").display(),
                text.trim()
            ))
        })?;
        let open_files_percent = if max_files == 0 {
            0.0
        } else {
            open_files as f64 * 100.0 / max_files as f64
        };
        // Warn once per crossing, not on every collect.
        let over = open_files_percent >= self.config.warn_open_files_percent;
        if over && !self.warned {
            log::warn!(
                "{open_files} of {max_files} file handles are open ({open_files_percent:.1}%)"
            );
        }
        self.warned = over;
        Ok(ProcSysStats {
            entropy_available_bits,
            entropy_pool_size_bits,
            open_files,
            max_files,
            open_files_percent,
        })
    }

    fn series() -> Vec<Series> {
        vec![
            Series::new("entropy_available_bits", "/entropy_available_bits", "bits"),
            Series::new("open_files_percent", "/open_files_percent", "percent"),
        ]
    }
}

export_collector!(ProcSysCollector);

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc-sys")
    }

    /// Guards the plugin contract: default config, unknown keys refused, collects never panic.
    #[test]
    fn honours_the_plugin_contract() {
        vitals_plugin_api::testing::assert_contract::<ProcSysCollector>();
    }

    /// Guards the parsers against the kernel's formats and against junk.
    #[test]
    fn parses_sysctl_files() {
        assert_eq!(parse_number("256\n"), Some(256));
        assert_eq!(parse_number("many"), None);
        assert_eq!(parse_file_nr("1024\t0\t4096\n"), Some((1024, 4096)));
        assert_eq!(parse_file_nr("1024 24 4096"), Some((1000, 4096)));
        assert_eq!(parse_file_nr("1024 0"), None);
        assert_eq!(parse_file_nr("a b c"), None);
    }

    /// Guards the section read from a fixture tree.
    #[test]
    fn collects_from_a_fixture_tree() {
        let mut c = ProcSysCollector::new(Config {
            root: fixture_root(),
            ..Config::default()
        })
        .expect("config");
        let s = c.collect().expect("collect");
        assert_eq!(s.entropy_available_bits, 256);
        assert_eq!(s.entropy_pool_size_bits, 4096);
        assert_eq!((s.open_files, s.max_files), (1024, 4096));
        assert_eq!(s.open_files_percent, 25.0);
    }

    /// Guards "unavailable" for a missing tree and the range check of the threshold.
    #[test]
    fn missing_files_are_unavailable_and_bad_thresholds_refused() {
        let mut c = ProcSysCollector::new(Config {
            root: PathBuf::from("/nonexistent"),
            ..Config::default()
        })
        .expect("config");
        match c.collect() {
            Err(Error::Unavailable(reason)) => assert!(reason.contains("/nonexistent"), "{reason}"),
            other => panic!("expected unavailable, got {other:?}"),
        }
        let bad = ProcSysCollector::new(Config {
            warn_open_files_percent: 150.0,
            ..Config::default()
        });
        match bad {
            Err(Error::InvalidConfig(m)) => assert!(m.contains("150"), "{m}"),
            _ => panic!("a threshold of 150% must be refused"),
        }
    }
}
