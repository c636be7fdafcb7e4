//! Test-only collector that misbehaves on request, to prove the host contains every kind of fault.

use std::time::Duration;

use vitals_plugin_api::prelude::*;

/// How the collector misbehaves.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Behaviour {
    /// Reports a counter, like a healthy collector.
    #[default]
    Ok,
    /// Returns an error from `collect`.
    Error,
    /// Reports its source as unavailable.
    Unavailable,
    /// Panics in `collect`.
    Panic,
    /// Panics in `new`.
    PanicInNew,
    /// Never returns from `collect`.
    Hang,
    /// Calls `std::process::abort()` in `collect`.
    Abort,
    /// Dereferences a null pointer in `collect`.
    Segfault,
    /// Allocates and keeps 64 MiB on every collect.
    Leak,
    /// Calls `std::process::exit(0)` in `collect`, ending whatever process it runs in.
    Exit,
    /// Closes the process's standard output and error once, then reports a counter.
    CloseStdio,
    /// Reports a section of about 20 MiB (a string field), larger than any reply a child may send.
    Huge,
    /// Reports an array of `size` numbers (default 1,000,000) under `items`, which the series
    /// `item` (`/items/*`) walks.
    Wide,
    /// Reports a value nested `size` levels deep (default 5,000) under `nested`, encoded by
    /// the SDK as any section is.
    Deep,
    /// Like `deep`, but the nesting is handed to the SDK as ready-made JSON text, which the SDK
    /// passes through as it is: what a plugin not built with this SDK could send.
    DeepRaw,
    /// Recurses without end in `collect`, overflowing its thread's stack.
    StackOverflow,
}

/// The `[collectors.<name>.config]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// What to do on collect.
    pub behaviour: Behaviour,
    /// Collects that succeed before the behaviour starts.
    pub good_collects: u64,
    /// A file whose presence switches the collector back to healthy (to test recovery).
    pub heal_file: Option<String>,
    /// Elements (`wide`) or levels (`deep`, `deep-raw`); default 1,000,000 and 5,000.
    pub size: Option<usize>,
}

/// The section: how many collects succeeded.
#[derive(Debug, Serialize)]
pub struct FaultStats {
    /// Successful collects so far.
    pub count: u64,
    /// Filler that makes the section large (behaviour `huge` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub padding: Option<String>,
    /// A huge array (behaviour `wide` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<u32>>,
    /// A deep nesting (behaviour `deep` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nested: Option<Nest>,
    /// A deep nesting as JSON text (behaviour `deep-raw` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<Box<serde_json::value::RawValue>>,
}

impl FaultStats {
    fn count(count: u64) -> Self {
        Self {
            count,
            padding: None,
            items: None,
            nested: None,
            raw: None,
        }
    }
}

/// An object nested this many levels deep (`{"a":{"a":…0…}}`), made while it is encoded, so
/// that building and dropping it takes no stack.
#[derive(Debug)]
pub struct Nest(pub usize);

impl Serialize for Nest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        if self.0 == 0 {
            return s.serialize_u64(0);
        }
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("a", &Nest(self.0 - 1))?;
        m.end()
    }
}

/// Calls itself until the stack runs out (the frame holds a buffer the optimiser cannot drop).
fn recurse(n: u64) -> u64 {
    let frame = std::hint::black_box([n; 64]);
    if frame[0] == u64::MAX {
        return 0;
    }
    recurse(n + 1).wrapping_add(frame[63])
}

/// `{"a":…}` nested `levels` deep, as JSON text.
pub fn nested_json(levels: usize) -> String {
    let mut text = "{\"a\":".repeat(levels);
    text.push('0');
    text.push_str(&"}".repeat(levels));
    text
}

/// The misbehaving collector.
pub struct FaultCollector {
    config: Config,
    count: u64,
    leaked: Vec<Vec<u8>>,
    closed_stdio: bool,
}

impl Collector for FaultCollector {
    const NAME: &'static str = "fault";
    const DESCRIPTION: &'static str = "Test-only collector that misbehaves on request";
    type Config = Config;
    type Section = FaultStats;

    fn new(config: Config) -> Result<Self, Error> {
        if config.behaviour == Behaviour::PanicInNew {
            panic!("fault plugin: panic in new, as configured");
        }
        Ok(Self {
            config,
            count: 0,
            leaked: Vec::new(),
            closed_stdio: false,
        })
    }

    fn collect(&mut self) -> Result<FaultStats, Error> {
        let healed = self
            .config
            .heal_file
            .as_deref()
            .is_some_and(|f| std::path::Path::new(f).exists());
        if self.count >= self.config.good_collects && !healed {
            match self.config.behaviour {
                Behaviour::Ok | Behaviour::PanicInNew => {}
                Behaviour::Error => {
                    return Err(Error::failed("fault plugin: error, as configured"))
                }
                Behaviour::Unavailable => {
                    return Err(Error::unavailable(
                        "fault plugin: unavailable, as configured",
                    ))
                }
                Behaviour::Panic => panic!("fault plugin: panic in collect, as configured"),
                Behaviour::Hang => loop {
                    std::thread::sleep(Duration::from_secs(3600));
                },
                Behaviour::Abort => std::process::abort(),
                Behaviour::Segfault => {
                    let p: *const u64 = std::hint::black_box(std::ptr::null());
                    // SAFETY: none; this fixture exists to crash.
                    let v = unsafe { std::ptr::read_volatile(p) };
                    return Ok(FaultStats::count(v));
                }
                Behaviour::Exit => std::process::exit(0),
                Behaviour::StackOverflow => {
                    return Ok(FaultStats::count(recurse(std::hint::black_box(0))));
                }
                Behaviour::Huge => {
                    self.count += 1;
                    return Ok(FaultStats {
                        padding: Some("x".repeat(20 << 20)),
                        ..FaultStats::count(self.count)
                    });
                }
                Behaviour::Wide => {
                    self.count += 1;
                    let n = self.config.size.unwrap_or(1_000_000);
                    return Ok(FaultStats {
                        items: Some((0..n).map(|i| i as u32).collect()),
                        ..FaultStats::count(self.count)
                    });
                }
                Behaviour::Deep => {
                    self.count += 1;
                    return Ok(FaultStats {
                        nested: Some(Nest(self.config.size.unwrap_or(5_000))),
                        ..FaultStats::count(self.count)
                    });
                }
                Behaviour::DeepRaw => {
                    self.count += 1;
                    let text = nested_json(self.config.size.unwrap_or(5_000));
                    return Ok(FaultStats {
                        raw: Some(serde_json::value::RawValue::from_string(text)?),
                        ..FaultStats::count(self.count)
                    });
                }
                Behaviour::CloseStdio => {
                    if !self.closed_stdio {
                        // SAFETY: closing the process's own descriptors 1 and 2 is exactly
                        // the misbehaviour this fixture exists for.
                        unsafe {
                            libc::close(1);
                            libc::close(2);
                        }
                        self.closed_stdio = true;
                    }
                }
                Behaviour::Leak => {
                    let block = vec![1u8; 64 << 20];
                    self.leaked.push(std::hint::black_box(block));
                }
            }
        }
        self.count += 1;
        log::debug!("fault plugin collect #{}", self.count);
        Ok(FaultStats::count(self.count))
    }

    fn series() -> Vec<Series> {
        vec![
            Series::new("count", "/count", "count"),
            Series::new("item", "/items/*", "count"),
        ]
    }
}

export_collector!(FaultCollector);

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards that the default (healthy) fixture itself honours the contract.
    #[test]
    fn healthy_fixture_honours_the_contract() {
        vitals_plugin_api::testing::assert_contract::<FaultCollector>();
    }

    /// Guards the SDK's panic guard: a panicking collect becomes an error, not an unwind.
    #[test]
    fn panics_are_caught_by_the_sdk() {
        let err = vitals_plugin_api::testing::check_contract::<FaultCollector>(
            serde_json::json!({ "behaviour": "panic" }),
        )
        .expect_err("a panicking collect breaks the contract");
        assert!(err.contains("panicked"), "{err}");
        let err = vitals_plugin_api::testing::check_contract::<FaultCollector>(
            serde_json::json!({ "behaviour": "panic-in-new" }),
        )
        .expect_err("a panicking new breaks the contract");
        assert!(err.contains("panic in new"), "{err}");
    }
}
