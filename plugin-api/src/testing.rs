//! The contract harness: checks, in-process, that a collector honours the plugin contract.
//!
//! Run it from a plugin's tests: `vitals_plugin_api::testing::assert_contract::<MyCollector>();`
//! A test that cannot run on this machine skips loudly with [`skip`] (a failure under CI).

mod skip;

use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::std_types::{RResult, RStr};
use serde_json::{json, Value};

use crate::abi::{HostLog, PluginError};
use crate::sdk::{Collector, InitParams, PluginInfo};

pub use skip::{in_ci, skip, skip_log, SKIP_LOG_NAME, SKIP_LOG_VAR};

/// The version of `vitals-plugin-api` this harness was compiled from: the version the host
/// checks a plugin's `describe` against. Read from the package here, not through
/// [`API_VERSION`](crate::API_VERSION), so that a describe (or a constant) reporting another
/// version fails the contract.
const PACKAGE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The prefix of a plugin package's name; the rest is the collector's name.
const PLUGIN_PACKAGE_PREFIX: &str = "vitals-plugin-";

extern "C" fn discard(_level: u8, _plugin: RStr<'_>, _message: RStr<'_>) {}

const DISCARD: HostLog = HostLog { log: discard };

/// What one contract run saw.
#[derive(Debug, Clone)]
pub struct ContractReport {
    /// The description the plugin gives.
    pub info: PluginInfo,
    /// The section of each collect (or the error it returned), in order.
    pub collects: Vec<Result<Value, PluginError>>,
}

impl ContractReport {
    /// The last successful section, if any.
    pub fn last_section(&self) -> Option<&Value> {
        self.collects.iter().rev().find_map(|c| c.as_ref().ok())
    }
}

/// Checks the contract with the default config (`{}`) and panics with the reason if it fails.
///
/// It checks that `describe` gives the collector's name (for a package named
/// `vitals-plugin-<name>`, the name in the package name, as the host's default library name
/// `libvitals_plugin_<name>.so` needs), the package version cargo runs the test for, and this
/// crate's version as the API version; that the default config is accepted, that an unknown
/// key is refused as invalid config, and that two collects each return a JSON object or
/// "unavailable", never a panic or another error.
///
/// The package name and version come from the `CARGO_PKG_NAME` and `CARGO_PKG_VERSION` that
/// `cargo test` sets for the test binary; run by other means, the name check is skipped
/// loudly (see [`skip`]).
pub fn assert_contract<C: Collector>() -> ContractReport {
    match check_contract::<C>(json!({})) {
        Ok(report) => report,
        Err(reason) => panic!("plugin `{}` breaks the contract: {reason}", C::NAME),
    }
}

/// Checks the contract with `config`, returning the reason when it fails.
///
/// # Errors
/// A sentence that says which part of the contract was broken.
pub fn check_contract<C: Collector>(config: Value) -> Result<ContractReport, String> {
    let facts = Facts::from_cargo();
    let outcome = catch_unwind(AssertUnwindSafe(|| run::<C>(config, &facts)));
    outcome.unwrap_or_else(|_| Err("a panic escaped the SDK's guard".to_owned()))
}

/// What `describe` must report, each known apart from the collector's own constants.
#[derive(Debug, Clone)]
struct Facts {
    /// The collector name the plugin's package name gives, when it gives one.
    name: Option<String>,
    /// The plugin's package version.
    version: String,
    /// The plugin API version the host compares with.
    api_version: String,
}

impl Facts {
    /// From the environment `cargo test` gives the test binary and this crate's version.
    fn from_cargo() -> Facts {
        let package = std::env::var("CARGO_PKG_NAME").ok();
        if package.is_none() {
            skip(
                "CARGO_PKG_NAME is unset (not run by `cargo test`), so describe's name is not \
                 compared with the package name",
            );
        }
        Facts {
            name: package.as_deref().and_then(collector_name_of_package),
            version: std::env::var("CARGO_PKG_VERSION").unwrap_or_else(|_| "0.0.0".to_owned()),
            api_version: PACKAGE_VERSION.to_owned(),
        }
    }
}

/// `vitals-plugin-disk` -> `disk`; `None` for other packages and for this crate itself.
fn collector_name_of_package(package: &str) -> Option<String> {
    if package == env!("CARGO_PKG_NAME") {
        return None;
    }
    package
        .strip_prefix(PLUGIN_PACKAGE_PREFIX)
        .filter(|rest| !rest.is_empty())
        .map(|rest| rest.replace('-', "_"))
}

/// `MAJOR.MINOR.PATCH` (a pre-release or build suffix allowed) as numbers.
fn parse_version(version: &str) -> Option<(u64, u64, u64)> {
    let core = version.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let version = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(version)
}

/// Compares what `describe` gave with the facts.
fn check_info(info: &PluginInfo, facts: &Facts) -> Result<(), String> {
    if info.name.is_empty()
        || !info
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(format!(
            "describe names `{}`: a collector name is non-empty lowercase ASCII letters, digits, `_` or `-`",
            info.name
        ));
    }
    if let Some(name) = &facts.name {
        if &info.name != name {
            return Err(format!(
                "describe names `{}`, but the package `{PLUGIN_PACKAGE_PREFIX}{}` says `{name}`",
                info.name,
                name.replace('_', "-")
            ));
        }
    }
    if info.version != facts.version {
        return Err(format!(
            "describe reports plugin version `{}`, not the package's `{}`",
            info.version, facts.version
        ));
    }
    let Some(api) = parse_version(&info.api_version) else {
        return Err(format!(
            "describe reports API version `{}`, which is not MAJOR.MINOR.PATCH",
            info.api_version
        ));
    };
    if info.api_version != facts.api_version {
        return Err(format!(
            "describe reports API version `{}` (major {}), not `{}`, the vitals-plugin-api it was built with",
            info.api_version, api.0, facts.api_version
        ));
    }
    Ok(())
}

fn run<C: Collector>(config: Value, facts: &Facts) -> Result<ContractReport, String> {
    let info: PluginInfo =
        serde_json::from_str(crate::sdk::__describe::<C>(&facts.version).as_str())
            .map_err(|e| format!("describe does not return plugin info: {e}"))?;
    check_info(&info, facts)?;

    let bad = InitParams::new(C::NAME, json!({ "no_such_key_in_any_config": 1 }));
    let bad = serde_json::to_string(&bad).map_err(|e| e.to_string())?;
    match crate::sdk::__create::<C>(RStr::from_str(&bad), DISCARD) {
        RResult::RErr(PluginError::InvalidConfig(_)) => {}
        RResult::RErr(other) => {
            return Err(format!(
                "an unknown config key gave `{other}`, not invalid config"
            ))
        }
        RResult::ROk(_) => return Err("an unknown config key was accepted".to_owned()),
    }

    let init =
        serde_json::to_string(&InitParams::new(C::NAME, config)).map_err(|e| e.to_string())?;
    let mut collector = match crate::sdk::__create::<C>(RStr::from_str(&init), DISCARD) {
        RResult::ROk(c) => c,
        RResult::RErr(PluginError::Unavailable(reason)) => {
            return Ok(ContractReport {
                info,
                collects: vec![Err(PluginError::Unavailable(reason))],
            })
        }
        RResult::RErr(e) => return Err(format!("the config was refused: {e}")),
    };

    let mut collects = Vec::new();
    for _ in 0..2 {
        match collector.collect() {
            RResult::ROk(json) => {
                let value: Value = serde_json::from_str(json.as_str())
                    .map_err(|e| format!("collect returned invalid JSON: {e}"))?;
                if !value.is_object() {
                    return Err(format!("collect returned {value}, not a JSON object"));
                }
                collects.push(Ok(value));
            }
            RResult::RErr(e @ PluginError::Unavailable(_)) => collects.push(Err(e)),
            RResult::RErr(e) => return Err(format!("collect failed: {e}")),
        }
    }
    Ok(ContractReport { info, collects })
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::sdk::Error;

    struct Probe;

    #[derive(Deserialize, Default)]
    #[serde(default, deny_unknown_fields)]
    struct ProbeConfig {}

    #[derive(Serialize)]
    struct ProbeSection {
        value: u64,
    }

    impl Collector for Probe {
        const NAME: &'static str = "probe";
        type Config = ProbeConfig;
        type Section = ProbeSection;
        fn new(_: ProbeConfig) -> Result<Self, Error> {
            Ok(Probe)
        }
        fn collect(&mut self) -> Result<ProbeSection, Error> {
            Ok(ProbeSection { value: 1 })
        }
    }

    fn facts(name: Option<&str>) -> Facts {
        Facts {
            name: name.map(str::to_owned),
            version: "2.3.4".to_owned(),
            api_version: PACKAGE_VERSION.to_owned(),
        }
    }

    /// Guards the name fact: a plugin package names its collector; this crate and other
    /// packages name none.
    #[test]
    fn the_package_name_gives_the_collector_name() {
        assert_eq!(
            collector_name_of_package("vitals-plugin-disk").as_deref(),
            Some("disk")
        );
        assert_eq!(
            collector_name_of_package("vitals-plugin-my-thing").as_deref(),
            Some("my_thing")
        );
        assert_eq!(collector_name_of_package("vitals-plugin-api"), None);
        assert_eq!(collector_name_of_package("vitals-plugin-"), None);
        assert_eq!(collector_name_of_package("uptime"), None);
    }

    /// Guards the comparison with independent facts: the right describe passes, a describe
    /// whose name, version or API version differs from the facts fails, saying which.
    #[test]
    fn a_describe_that_differs_from_the_facts_fails() {
        let report = run::<Probe>(json!({}), &facts(Some("probe"))).expect("contract");
        assert_eq!(report.info.version, "2.3.4");
        assert_eq!(report.info.api_version, PACKAGE_VERSION);
        run::<Probe>(json!({}), &facts(None)).expect("no name fact");

        let err = run::<Probe>(json!({}), &facts(Some("disk"))).expect_err("wrong name");
        assert!(err.contains("describe names `probe`"), "{err}");
        assert!(err.contains("vitals-plugin-disk"), "{err}");

        let info = crate::sdk::info::<Probe>("2.3.4");
        let mut api = facts(Some("probe"));
        api.api_version = "2.0.0".to_owned();
        let err = check_info(&info, &api).expect_err("wrong API version");
        assert!(err.contains("not `2.0.0`"), "{err}");

        for (field, bad) in [("version", "9.9.9"), ("api", "1"), ("name", "Bad Name")] {
            let mut wrong = info.clone();
            match field {
                "version" => wrong.version = bad.to_owned(),
                "api" => wrong.api_version = bad.to_owned(),
                _ => wrong.name = bad.to_owned(),
            }
            let err = check_info(&wrong, &facts(None)).expect_err(field);
            assert!(err.contains(bad), "{field}: {err}");
        }
    }

    /// Guards the version parser the API check uses.
    #[test]
    fn versions_parse_as_three_numbers() {
        assert_eq!(parse_version("1.0.0"), Some((1, 0, 0)));
        assert_eq!(parse_version("1.2.3-rc.1+build"), Some((1, 2, 3)));
        for bad in ["", "1", "1.0", "1.0.0.0", "a.b.c", "1..0"] {
            assert_eq!(parse_version(bad), None, "{bad}");
        }
    }
}
