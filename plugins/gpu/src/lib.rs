//! GPU collector: every NVIDIA GPU through NVML (nvml-wrapper), or `nvidia-smi` when NVML cannot be loaded.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use nvml_wrapper::Nvml;
use vitals_plugin_api::prelude::*;
use vitals_plugin_api::sections::GpuStats;

pub mod cgroup;
pub mod nvml;
pub mod smi;

/// Where the collector reads GPUs from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// NVML when it loads, otherwise `nvidia-smi`.
    #[default]
    Auto,
    /// NVML only.
    Nvml,
    /// `nvidia-smi` only.
    NvidiaSmi,
}

/// The `[collectors.gpu.config]` table.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where to read GPUs from: `auto` (NVML, falling back to `nvidia-smi`), `nvml` or `nvidia-smi`.
    pub source: Source,
    /// The NVML library to load: an absolute path, or a file name the dynamic loader searches.
    /// Default: the driver's `libnvidia-ml.so.1`, then `libnvidia-ml.so`. Tests point it at a fake.
    pub nvml_library: Option<PathBuf>,
    /// The `nvidia-smi` command: a name searched on `PATH`, or a path.
    pub nvidia_smi: PathBuf,
    /// How long the `nvidia-smi` runs of one collect may take together, e.g. `"3s"`.
    /// Keep it below the collector's deadline.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Where `/proc` is, to find each GPU process's container. Tests point it at a fixture.
    pub proc_root: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            source: Source::Auto,
            nvml_library: None,
            nvidia_smi: PathBuf::from("nvidia-smi"),
            timeout: Duration::from_secs(3),
            proc_root: PathBuf::from("/proc"),
        }
    }
}

impl Config {
    /// Checks the values serde cannot, reporting every problem at once.
    ///
    /// # Errors
    /// One message naming each field that is out of range.
    pub fn validate(&self) -> Result<(), Error> {
        let mut problems = Vec::new();
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(60) {
            problems.push(format!(
                "`timeout` must be between 1ms and 60s, not {}",
                humantime::format_duration(self.timeout)
            ));
        }
        if self.nvidia_smi.as_os_str().is_empty() {
            problems.push("`nvidia_smi` must not be empty".to_owned());
        }
        if self
            .nvml_library
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            problems.push("`nvml_library` must not be empty".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid_config(problems.join("; ")))
        }
    }
}

/// The library names NVML is looked up by when `nvml_library` is not set: the driver ships
/// the versioned name; the bare name only comes with development packages.
const DEFAULT_NVML_LIBRARIES: &[&str] = &["libnvidia-ml.so.1", "libnvidia-ml.so"];

/// Loads NVML from `path`, or from the default names; the error says what was tried.
pub fn load_nvml(path: Option<&PathBuf>) -> Result<Nvml, String> {
    let candidates: Vec<PathBuf> = match path {
        Some(p) => vec![p.clone()],
        None => DEFAULT_NVML_LIBRARIES.iter().map(PathBuf::from).collect(),
    };
    let mut errors = Vec::new();
    for candidate in &candidates {
        match Nvml::builder().lib_path(candidate.as_os_str()).init() {
            Ok(nvml) => return Ok(nvml),
            Err(e) => {
                let why = nvml::describe(&e);
                let shown = candidate.display().to_string();
                errors.push(if why.contains(&shown) {
                    why
                } else {
                    format!("{shown}: {why}")
                });
            }
        }
    }
    Err(format!("NVML could not be loaded ({})", errors.join("; ")))
}

/// Reports every NVIDIA GPU; holds the NVML handle for the plugin's life.
pub struct GpuCollector {
    source: Source,
    nvml: Option<nvml::NvmlReader>,
    /// Why NVML is not loaded, when it is not.
    nvml_error: Option<String>,
    smi: smi::NvidiaSmi,
    /// The reason last reported as unavailable, so it is logged once and not on every tick.
    unavailable: Option<String>,
    /// Warnings already logged (unsupported fields, malformed lines), so each is logged once.
    warned: HashSet<String>,
}

/// Logging every distinct warning once must not grow without bound on ever-changing output.
const MAX_REMEMBERED_WARNINGS: usize = 256;

impl GpuCollector {
    /// Logs `message` at `level` unless it was logged before.
    fn log_once(&mut self, level: log::Level, message: String) {
        if self.warned.len() >= MAX_REMEMBERED_WARNINGS {
            self.warned.clear();
        }
        if !self.warned.contains(&message) {
            log::log!(level, "{message}");
            self.warned.insert(message);
        }
    }

    fn read(&mut self) -> Result<GpuStats, Error> {
        if let Some(nvml) = &mut self.nvml {
            let reading = nvml.read().map_err(nvml::ReadError::into_error)?;
            for warning in reading.warnings {
                log::warn!("{warning}");
            }
            for note in reading.unsupported {
                self.log_once(log::Level::Debug, note);
            }
            return Ok(reading.stats);
        }
        let nvml_reason = self.nvml_error.clone();
        if self.source == Source::Nvml {
            let reason = nvml_reason.unwrap_or_else(|| "NVML is not loaded".to_owned());
            return Err(Error::unavailable(format!("no NVIDIA driver: {reason}")));
        }
        match self.smi.read() {
            Ok(reading) => {
                for warning in reading.warnings {
                    self.log_once(log::Level::Warn, warning);
                }
                Ok(reading.stats)
            }
            Err(smi::SmiError::Unavailable(why)) => Err(Error::unavailable(match nvml_reason {
                Some(nvml) => format!("no NVIDIA driver: {nvml}; {why}"),
                None => format!("no NVIDIA driver: {why}"),
            })),
            Err(e) => Err(Error::failed(e)),
        }
    }
}

impl Collector for GpuCollector {
    const NAME: &'static str = "gpu";
    const DESCRIPTION: &'static str =
        "NVIDIA GPUs: identity, utilization, memory, temperature, power, fans, clocks and processes";
    type Config = Config;
    type Section = GpuStats;

    fn new(config: Config) -> Result<Self, Error> {
        config.validate()?;
        let (nvml, nvml_error) = match config.source {
            Source::NvidiaSmi => (None, None),
            Source::Auto | Source::Nvml => match load_nvml(config.nvml_library.as_ref()) {
                Ok(nvml) => (
                    Some(nvml::NvmlReader::new(nvml, config.proc_root.clone())),
                    None,
                ),
                Err(e) => (None, Some(e)),
            },
        };
        if let (Source::Auto, Some(reason)) = (config.source, &nvml_error) {
            log::info!(
                "{reason}; reading GPUs through `{}`",
                config.nvidia_smi.display()
            );
        }
        Ok(Self {
            source: config.source,
            nvml,
            nvml_error,
            smi: smi::NvidiaSmi::new(config.nvidia_smi, config.timeout, config.proc_root),
            unavailable: None,
            warned: HashSet::new(),
        })
    }

    fn collect(&mut self) -> Result<GpuStats, Error> {
        let result = self.read();
        match &result {
            Err(Error::Unavailable(reason)) => {
                if self.unavailable.as_ref() != Some(reason) {
                    log::info!("GPU section unavailable: {reason}");
                    self.unavailable = Some(reason.clone());
                }
            }
            Ok(stats) => {
                if self.unavailable.take().is_some() {
                    log::info!("{} GPU(s) found again", stats.gpus.len());
                }
            }
            Err(_) => {}
        }
        result
    }

    fn series() -> Vec<Series> {
        [
            ("utilization_percent", "percent"),
            ("memory_used_bytes", "bytes"),
            ("memory_used_percent", "percent"),
            ("temperature_celsius", "celsius"),
            ("power_draw_watts", "watts"),
            ("fan_speed_percent", "percent"),
        ]
        .into_iter()
        .map(|(name, unit)| {
            Series::new(name, &format!("/gpus/*/{name}"), unit).labelled_by("index")
        })
        // A GPU in MIG mode has no whole-GPU utilization; its instances are charted instead.
        .chain(
            [
                ("memory_used_bytes", "bytes"),
                ("utilization_percent", "percent"),
            ]
            .map(|(name, unit)| {
                Series::new(
                    &format!("mig_{name}"),
                    &format!("/gpus/*/mig_devices/*/{name}"),
                    unit,
                )
                .labelled_by("id")
            }),
        )
        .collect()
    }
}

export_collector!(GpuCollector);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use vitals_plugin_api::testing::check_contract;

    /// Guards the plugin contract with the default config: a section or "unavailable", never a panic.
    #[test]
    fn honours_the_plugin_contract() {
        let report = vitals_plugin_api::testing::assert_contract::<GpuCollector>();
        assert_eq!(report.info.series.len(), 8);
        for section in report.collects.iter().flatten() {
            serde_json::from_value::<GpuStats>(section.clone()).expect("GpuStats");
        }
    }

    /// Guards the no-driver state: a missing library and a missing nvidia-smi are "unavailable"
    /// with both reasons, not a failure.
    #[test]
    fn no_driver_is_unavailable_with_the_reasons() {
        let report = check_contract::<GpuCollector>(json!({
            "nvml_library": "/nonexistent/libnvidia-ml.so.1",
            "nvidia_smi": "/nonexistent/nvidia-smi",
        }))
        .expect("contract");
        assert_eq!(report.collects.len(), 2);
        for collect in &report.collects {
            let reason = collect.as_ref().expect_err("unavailable").to_string();
            assert!(
                reason.starts_with("unavailable: no NVIDIA driver"),
                "{reason}"
            );
            assert!(
                reason.contains("/nonexistent/libnvidia-ml.so.1"),
                "{reason}"
            );
            assert!(reason.contains("/nonexistent/nvidia-smi"), "{reason}");
        }
    }

    /// Guards `source = "nvml"`: no fallback, and the reason names the library.
    #[test]
    fn nvml_only_does_not_fall_back() {
        let mut c = GpuCollector::new(Config {
            source: Source::Nvml,
            nvml_library: Some("/nonexistent/libnvml.so".into()),
            nvidia_smi: "/bin/true".into(),
            ..Config::default()
        })
        .expect("new");
        let err = c.collect().expect_err("unavailable");
        assert!(
            matches!(&err, Error::Unavailable(r) if r.contains("/nonexistent/libnvml.so")),
            "{err}"
        );
    }

    /// Guards config validation: every bad value is named at once, unknown sources refused.
    #[test]
    fn bad_config_names_each_problem() {
        let err = check_contract::<GpuCollector>(json!({ "source": "cuda" })).expect_err("refused");
        assert!(err.contains("cuda"), "{err}");
        let cfg: Config =
            serde_json::from_value(json!({ "timeout": "0s", "nvidia_smi": "" })).expect("parses");
        let err = cfg.validate().expect_err("invalid").to_string();
        assert!(
            err.contains("`timeout`") && err.contains("`nvidia_smi`"),
            "{err}"
        );
        let cfg: Config =
            serde_json::from_value(json!({ "timeout": "250ms", "source": "nvidia-smi" }))
                .expect("parses");
        assert_eq!(cfg.timeout, Duration::from_millis(250));
        assert_eq!(cfg.source, Source::NvidiaSmi);
        cfg.validate().expect("valid");
    }
}
