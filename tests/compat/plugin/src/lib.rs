//! Test-only collector built against several plugin API versions, to prove which ones the host loads.
//!
//! Its section says which API it was built against. `VITALS_COMPAT_BEHAVIOUR` (test-only)
//! makes it misbehave, so `vitals plugin check` can be shown to catch each fault with the
//! default config: `error`, `panic`, `hang`, `unavailable` or `accept-unknown-keys`.

use vitals_plugin_api::prelude::*;

/// The `[collectors.<name>.config]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Added to the reported collect count (proves the table reaches the plugin).
    pub offset: u64,
}

/// A config that takes anything, for the `accept-unknown-keys` fault.
#[derive(Debug, Default, Deserialize)]
pub struct LooseConfig {}

/// The section.
#[derive(Debug, Serialize)]
pub struct CompatStats {
    /// The `vitals-plugin-api` version this library was built against.
    pub api_version: &'static str,
    /// Collects so far, plus the configured offset.
    pub collects: u64,
}

/// The collector.
pub struct CompatCollector {
    collects: u64,
    behaviour: String,
}

fn behaviour() -> String {
    std::env::var("VITALS_COMPAT_BEHAVIOUR").unwrap_or_default()
}

impl Collector for CompatCollector {
    const NAME: &'static str = "compat";
    const DESCRIPTION: &'static str = "Test-only: reports the plugin API it was built against";
    type Config = serde_json::Value;
    type Section = CompatStats;

    fn new(config: serde_json::Value) -> Result<Self, Error> {
        let behaviour = behaviour();
        let offset = if behaviour == "accept-unknown-keys" {
            serde_json::from_value::<LooseConfig>(config).map_err(Error::invalid_config)?;
            0
        } else {
            serde_json::from_value::<Config>(config)
                .map_err(Error::invalid_config)?
                .offset
        };
        Ok(Self {
            collects: offset,
            behaviour,
        })
    }

    fn collect(&mut self) -> Result<CompatStats, Error> {
        match self.behaviour.as_str() {
            "error" => return Err(Error::failed("failing, as VITALS_COMPAT_BEHAVIOUR asks")),
            "panic" => panic!("panicking, as VITALS_COMPAT_BEHAVIOUR asks"),
            "hang" => loop {
                std::thread::park();
            },
            "unavailable" => return Err(Error::unavailable("unavailable, as asked")),
            _ => {}
        }
        self.collects += 1;
        Ok(CompatStats {
            api_version: vitals_plugin_api::API_VERSION,
            collects: self.collects,
        })
    }
}

export_collector!(CompatCollector);
