//! The contract harness: checks, in-process, that a collector honours the plugin contract.
//!
//! Run it from a plugin's tests: `vitals_plugin_api::testing::assert_contract::<MyCollector>();`

use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::std_types::{RResult, RStr};
use serde_json::{json, Value};

use crate::abi::{HostLog, PluginError};
use crate::sdk::{Collector, InitParams, PluginInfo, API_VERSION};

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
/// It checks that `describe` names the collector and the API version, that the default config
/// is accepted, that an unknown key is refused as invalid config, and that two collects each
/// return a JSON object or "unavailable", never a panic or another error.
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
    let outcome = catch_unwind(AssertUnwindSafe(|| run::<C>(config)));
    outcome.unwrap_or_else(|_| Err("a panic escaped the SDK's guard".to_owned()))
}

fn run<C: Collector>(config: Value) -> Result<ContractReport, String> {
    let info: PluginInfo = serde_json::from_str(crate::sdk::__describe::<C>("0.0.0").as_str())
        .map_err(|e| format!("describe does not return plugin info: {e}"))?;
    if info.name != C::NAME {
        return Err(format!("describe names `{}`, not `{}`", info.name, C::NAME));
    }
    if info.api_version != API_VERSION {
        return Err(format!(
            "describe reports API {}, not {API_VERSION}",
            info.api_version
        ));
    }

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
