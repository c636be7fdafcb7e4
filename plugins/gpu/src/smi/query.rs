//! `nvidia-smi --query-gpu`: the columns asked for (each under the names drivers have given it), the names an installed nvidia-smi knows (`--help-query-gpu`), and the CSV it prints (read by its header, units or not).

use std::collections::HashSet;

use vitals_plugin_api::sections::{
    ComputeMode, GpuDevice, GpuEcc, MigMode, ThrottleReason, ThrottleSeconds,
};

const MIB: u64 = 1 << 20;

/// One column of `nvidia-smi --query-gpu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// `index`
    Index,
    /// `name`
    Name,
    /// `uuid`
    Uuid,
    /// `kmd_version` (drivers from 610 on), else `driver_version`
    DriverVersion,
    /// `pci.bus_id`
    PciBusId,
    /// `compute_cap` (drivers from 510 on)
    ComputeCap,
    /// `pcie.link.gen.gpucurrent`, else `pcie.link.gen.current`
    PcieGeneration,
    /// `pcie.link.gen.max`
    PcieMaxGeneration,
    /// `pcie.link.width.current`
    PcieLinkWidth,
    /// `pcie.link.width.max`
    PcieMaxLinkWidth,
    /// `utilization.gpu` (%)
    Utilization,
    /// `utilization.memory` (%)
    MemoryUtilization,
    /// `utilization.encoder` (%)
    EncoderUtilization,
    /// `utilization.decoder` (%)
    DecoderUtilization,
    /// `utilization.jpeg` (%)
    JpegUtilization,
    /// `utilization.ofa` (%)
    OfaUtilization,
    /// `encoder.stats.sessionCount`
    EncoderSessions,
    /// `memory.total` (MiB)
    MemoryTotal,
    /// `memory.used` (MiB)
    MemoryUsed,
    /// `memory.free` (MiB)
    MemoryFree,
    /// `memory.reserved` (MiB)
    MemoryReserved,
    /// `temperature.gpu` (°C)
    Temperature,
    /// `temperature.memory` (°C)
    MemoryTemperature,
    /// `power.draw` (W)
    PowerDraw,
    /// `enforced.power.limit` (W): the limit the driver enforces, as NVML reports it
    PowerLimit,
    /// `power.default_limit` (W)
    PowerDefaultLimit,
    /// `power.max_limit` (W)
    PowerMaxLimit,
    /// `fan.speed` (%)
    FanSpeed,
    /// `clocks.current.graphics` / `clocks.gr` (MHz)
    GraphicsClock,
    /// `clocks.current.memory` / `clocks.mem` (MHz)
    MemoryClock,
    /// `pstate`
    PerformanceState,
    /// `persistence_mode`
    PersistenceMode,
    /// `compute_mode`
    ComputeMode,
    /// `vbios_version`
    VbiosVersion,
    /// `mig.mode.current`
    MigCurrent,
    /// `mig.mode.pending`
    MigPending,
    /// `ecc.mode.current`
    EccCurrent,
    /// `ecc.mode.pending`
    EccPending,
    /// `ecc.errors.corrected.volatile.total`
    EccCorrectedVolatile,
    /// `ecc.errors.uncorrected.volatile.total`
    EccUncorrectedVolatile,
    /// `ecc.errors.corrected.aggregate.total`
    EccCorrectedAggregate,
    /// `ecc.errors.uncorrected.aggregate.total`
    EccUncorrectedAggregate,
    /// `retired_pages.single_bit_ecc.count` / `retired_pages.sbe`
    RetiredSingleBit,
    /// `retired_pages.double_bit.count` / `retired_pages.dbe`
    RetiredDoubleBit,
    /// `retired_pages.pending`
    RetiredPending,
    /// `remapped_rows.correctable`
    RemappedCorrectable,
    /// `remapped_rows.uncorrectable`
    RemappedUncorrectable,
    /// `remapped_rows.pending`
    RemappedPending,
    /// `remapped_rows.failure`
    RemappedFailure,
    /// `clocks_event_reasons.active`, else `clocks_throttle_reasons.active` (a hex bitmask)
    ThrottleActive,
    /// `clocks_event_reasons_counters.sw_power_cap` (µs)
    ThrottlePowerCap,
    /// `clocks_event_reasons_counters.sw_thermal_slowdown` (µs)
    ThrottleSwThermal,
    /// `clocks_event_reasons_counters.hw_thermal_slowdown` (µs)
    ThrottleHwThermal,
    /// `clocks_event_reasons_counters.sync_boost` (µs)
    ThrottleSyncBoost,
    /// `clocks_event_reasons_counters.hw_power_brake_slowdown` (µs)
    ThrottlePowerBrake,
}

impl Field {
    /// Every column, in the order the collector asks for them.
    pub const ALL: [Field; 55] = [
        Field::Index,
        Field::Name,
        Field::Uuid,
        Field::DriverVersion,
        Field::PciBusId,
        Field::ComputeCap,
        Field::PcieGeneration,
        Field::PcieMaxGeneration,
        Field::PcieLinkWidth,
        Field::PcieMaxLinkWidth,
        Field::Utilization,
        Field::MemoryUtilization,
        Field::EncoderUtilization,
        Field::DecoderUtilization,
        Field::JpegUtilization,
        Field::OfaUtilization,
        Field::EncoderSessions,
        Field::MemoryTotal,
        Field::MemoryUsed,
        Field::MemoryFree,
        Field::MemoryReserved,
        Field::Temperature,
        Field::MemoryTemperature,
        Field::PowerDraw,
        Field::PowerLimit,
        Field::PowerDefaultLimit,
        Field::PowerMaxLimit,
        Field::FanSpeed,
        Field::GraphicsClock,
        Field::MemoryClock,
        Field::PerformanceState,
        Field::PersistenceMode,
        Field::ComputeMode,
        Field::VbiosVersion,
        Field::MigCurrent,
        Field::MigPending,
        Field::EccCurrent,
        Field::EccPending,
        Field::EccCorrectedVolatile,
        Field::EccUncorrectedVolatile,
        Field::EccCorrectedAggregate,
        Field::EccUncorrectedAggregate,
        Field::RetiredSingleBit,
        Field::RetiredDoubleBit,
        Field::RetiredPending,
        Field::RemappedCorrectable,
        Field::RemappedUncorrectable,
        Field::RemappedPending,
        Field::RemappedFailure,
        Field::ThrottleActive,
        Field::ThrottlePowerCap,
        Field::ThrottleSwThermal,
        Field::ThrottleHwThermal,
        Field::ThrottleSyncBoost,
        Field::ThrottlePowerBrake,
    ];

    /// The names `--query-gpu` knows it by, the current one first: a name a newer driver
    /// deprecates comes after the one that replaces it.
    pub fn names(self) -> &'static [&'static str] {
        match self {
            Field::Index => &["index"],
            Field::Name => &["name", "gpu_name"],
            Field::Uuid => &["uuid", "gpu_uuid"],
            Field::DriverVersion => &["kmd_version", "driver_version"],
            Field::PciBusId => &["pci.bus_id", "gpu_bus_id"],
            Field::ComputeCap => &["compute_cap"],
            Field::PcieGeneration => &["pcie.link.gen.gpucurrent", "pcie.link.gen.current"],
            Field::PcieMaxGeneration => &["pcie.link.gen.max"],
            Field::PcieLinkWidth => &["pcie.link.width.current"],
            Field::PcieMaxLinkWidth => &["pcie.link.width.max"],
            Field::Utilization => &["utilization.gpu"],
            Field::MemoryUtilization => &["utilization.memory"],
            Field::EncoderUtilization => &["utilization.encoder"],
            Field::DecoderUtilization => &["utilization.decoder"],
            Field::JpegUtilization => &["utilization.jpeg"],
            Field::OfaUtilization => &["utilization.ofa"],
            Field::EncoderSessions => &["encoder.stats.sessionCount"],
            Field::MemoryTotal => &["memory.total"],
            Field::MemoryUsed => &["memory.used"],
            Field::MemoryFree => &["memory.free"],
            Field::MemoryReserved => &["memory.reserved"],
            Field::Temperature => &["temperature.gpu"],
            Field::MemoryTemperature => &["temperature.memory"],
            Field::PowerDraw => &["power.draw"],
            Field::PowerLimit => &["enforced.power.limit", "gpu.power.current_limit"],
            Field::PowerDefaultLimit => &["power.default_limit", "gpu.power.default_limit"],
            Field::PowerMaxLimit => &["power.max_limit", "gpu.power.max_limit"],
            Field::FanSpeed => &["fan.speed"],
            Field::GraphicsClock => &["clocks.current.graphics", "clocks.gr"],
            Field::MemoryClock => &["clocks.current.memory", "clocks.mem"],
            Field::PerformanceState => &["pstate"],
            Field::PersistenceMode => &["persistence_mode"],
            Field::ComputeMode => &["compute_mode"],
            Field::VbiosVersion => &["vbios_version"],
            Field::MigCurrent => &["mig.mode.current"],
            Field::MigPending => &["mig.mode.pending"],
            Field::EccCurrent => &["ecc.mode.current"],
            Field::EccPending => &["ecc.mode.pending"],
            Field::EccCorrectedVolatile => &["ecc.errors.corrected.volatile.total"],
            Field::EccUncorrectedVolatile => &["ecc.errors.uncorrected.volatile.total"],
            Field::EccCorrectedAggregate => &["ecc.errors.corrected.aggregate.total"],
            Field::EccUncorrectedAggregate => &["ecc.errors.uncorrected.aggregate.total"],
            Field::RetiredSingleBit => &["retired_pages.single_bit_ecc.count", "retired_pages.sbe"],
            Field::RetiredDoubleBit => &["retired_pages.double_bit.count", "retired_pages.dbe"],
            Field::RetiredPending => &["retired_pages.pending"],
            Field::RemappedCorrectable => &["remapped_rows.correctable", "remapped_rows.sbe"],
            Field::RemappedUncorrectable => &["remapped_rows.uncorrectable", "remapped_rows.dbe"],
            Field::RemappedPending => &["remapped_rows.pending"],
            Field::RemappedFailure => &["remapped_rows.failure"],
            Field::ThrottleActive => &[
                "clocks_event_reasons.active",
                "clocks_throttle_reasons.active",
            ],
            Field::ThrottlePowerCap => &["clocks_event_reasons_counters.sw_power_cap"],
            Field::ThrottleSwThermal => &["clocks_event_reasons_counters.sw_thermal_slowdown"],
            Field::ThrottleHwThermal => &["clocks_event_reasons_counters.hw_thermal_slowdown"],
            Field::ThrottleSyncBoost => &["clocks_event_reasons_counters.sync_boost"],
            Field::ThrottlePowerBrake => &["clocks_event_reasons_counters.hw_power_brake_slowdown"],
        }
    }

    /// The field a query or header name means.
    pub fn by_name(name: &str) -> Option<Field> {
        Field::ALL
            .iter()
            .copied()
            .find(|f| f.names().contains(&name))
    }
}

/// The names `--help-query-gpu` lists: every quoted name on a line that starts with one
/// (`"name" or "gpu_name"`).
pub fn parse_help(text: &str) -> HashSet<String> {
    text.lines()
        .filter(|l| l.starts_with('"'))
        .flat_map(|l| l.split('"').skip(1).step_by(2))
        .filter(|n| !n.is_empty() && !n.contains(' '))
        .map(str::to_owned)
        .collect()
}

/// The columns to ask for and the name to ask each by: with the names an nvidia-smi knows,
/// each field's first known name (fields it knows under no name are left out); without
/// them (`None`), each field's oldest name, the one most drivers know.
pub fn choose(known: Option<&HashSet<String>>) -> Vec<(Field, &'static str)> {
    Field::ALL
        .iter()
        .filter_map(|f| {
            let names = f.names();
            match known {
                Some(k) => names.iter().find(|n| k.contains(**n)).map(|n| (*f, *n)),
                None => names.last().map(|n| (*f, *n)),
            }
        })
        .collect()
}

/// The `--query-gpu=` argument for the chosen columns.
pub fn query_gpu_arg(columns: &[(Field, &'static str)]) -> String {
    let names: Vec<&str> = columns.iter().map(|(_, n)| *n).collect();
    format!("--query-gpu={}", names.join(","))
}

/// What one parse of `--query-gpu` output found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ParsedGpus {
    /// The GPUs of the well-formed lines, in index order.
    pub gpus: Vec<GpuDevice>,
    /// The driver version the first GPU reports.
    pub driver_version: Option<String>,
    /// One sentence per skipped line or unreadable value.
    pub warnings: Vec<String>,
}

/// A value, or `None` for what nvidia-smi prints when it has none (`[N/A]`, `[Not Supported]`,
/// `N/A`, `[Unknown Error]`, `[Requested functionality has been deprecated]`, an empty column).
pub fn present(raw: &str) -> Option<&str> {
    let v = raw.trim();
    (!v.is_empty() && !v.starts_with('[') && v != "N/A").then_some(v)
}

/// The number in a value, without the unit nvidia-smi adds unless asked not to (`130.44 W`).
fn number_text(v: &str) -> &str {
    v.split_once(' ').map_or(v, |(n, _)| n)
}

/// Parses one number, noting in `warnings` a value that is present but not a number.
fn number<T: std::str::FromStr>(
    raw: &str,
    column: &str,
    line: u64,
    warnings: &mut Vec<String>,
) -> Option<T> {
    let v = present(raw)?;
    match number_text(v).parse() {
        Ok(n) => Some(n),
        Err(_) => {
            warnings.push(format!(
                "nvidia-smi line {line}: `{column}` is not a number: `{v}`"
            ));
            None
        }
    }
}

/// `Enabled`/`Yes`/`Active` -> true, `Disabled`/`No`/`Not Active` -> false.
fn flag(raw: &str) -> Option<bool> {
    match present(raw)? {
        "Enabled" | "Yes" | "Active" | "On" => Some(true),
        "Disabled" | "No" | "Not Active" | "Off" => Some(false),
        _ => None,
    }
}

/// nvidia-smi's `compute_mode` spellings.
fn compute_mode(raw: &str) -> Option<ComputeMode> {
    match present(raw)? {
        "Default" => Some(ComputeMode::Default),
        "Exclusive_Thread" => Some(ComputeMode::ExclusiveThread),
        "Prohibited" => Some(ComputeMode::Prohibited),
        "Exclusive_Process" => Some(ComputeMode::ExclusiveProcess),
        _ => None,
    }
}

/// A hex bitmask (`0x0000000000000004`).
fn hex_mask(raw: &str) -> Option<u64> {
    let v = present(raw)?;
    u64::from_str_radix(v.strip_prefix("0x").or_else(|| v.strip_prefix("0X"))?, 16).ok()
}

/// nvidia-smi separates with `, ` and never quotes, so a `"` in a value is taken as it is.
pub fn csv_reader(text: &str) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .quoting(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes())
}

/// The field of each header cell (`memory.total [MiB]` -> `memory.total`); `None` for a
/// column this parser does not read.
fn header_fields(header: &csv::StringRecord) -> Vec<Option<Field>> {
    header
        .iter()
        .map(|h| Field::by_name(h.split_once(" [").map_or(h, |(n, _)| n).trim()))
        .collect()
}

/// Parses `nvidia-smi --query-gpu=… --format=csv[,nounits]` output, whose first line names
/// the columns (in any order, by any of their names, with or without units).
///
/// A line with the wrong number of columns or without a numeric index is skipped with a
/// warning; a value that is absent or unreadable leaves only that field empty.
pub fn parse_query_gpu(text: &str) -> ParsedGpus {
    let mut parsed = ParsedGpus::default();
    let mut records = csv_reader(text).into_records();
    let header = match records.next() {
        Some(Ok(h)) => h,
        Some(Err(e)) => {
            parsed
                .warnings
                .push(format!("nvidia-smi header skipped: {e}"));
            return parsed;
        }
        None => return parsed,
    };
    let fields = header_fields(&header);
    if !fields.contains(&Some(Field::Index)) {
        let shown: Vec<&str> = header.iter().collect();
        parsed.warnings.push(format!(
            "nvidia-smi printed no `index` column; its first line: `{}`",
            shown.join(", ")
        ));
        return parsed;
    }
    for (n, record) in records.enumerate() {
        let line = n as u64 + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                parsed
                    .warnings
                    .push(format!("nvidia-smi line {line} skipped: {e}"));
                continue;
            }
        };
        let line = record.position().map_or(line, |p| p.line());
        if record.len() != fields.len() {
            let shown: Vec<&str> = record.iter().collect();
            parsed.warnings.push(format!(
                "nvidia-smi line {line} skipped: {} values where the header has {}: `{}`",
                record.len(),
                fields.len(),
                shown.join(", ")
            ));
            continue;
        }
        match parse_gpu_line(&fields, &record, line, &mut parsed) {
            Some(gpu) => parsed.gpus.push(gpu),
            None => {
                let shown: Vec<&str> = record.iter().collect();
                parsed.warnings.push(format!(
                    "nvidia-smi line {line} skipped: no GPU index: `{}`",
                    shown.join(", ")
                ));
            }
        }
    }
    parsed.gpus.sort_by_key(|g| g.index);
    parsed
}

/// One GPU line; `None` without a numeric index.
fn parse_gpu_line(
    fields: &[Option<Field>],
    record: &csv::StringRecord,
    line: u64,
    parsed: &mut ParsedGpus,
) -> Option<GpuDevice> {
    let at = |want: Field| {
        fields
            .iter()
            .position(|f| *f == Some(want))
            .map(|i| &record[i])
    };
    let index = present(at(Field::Index)?)?.parse::<u32>().ok()?;
    let mut gpu = GpuDevice {
        index,
        ..GpuDevice::default()
    };
    let w = &mut parsed.warnings;
    let (mut mig_current, mut mig_pending) = (None, None);
    let (mut ecc_current, mut ecc_pending) = (None, None);
    let mut ecc = GpuEcc::default();
    let mut throttle = ThrottleSeconds::default();
    let us = |raw: &str, name: &str, w: &mut Vec<String>| {
        number::<f64>(raw, name, line, w).map(|v| v / 1e6)
    };
    for (field, raw) in fields.iter().zip(record.iter()) {
        let Some(field) = *field else { continue };
        let name = field.names()[0];
        let text = || present(raw).map(str::to_owned);
        let mib = |w: &mut Vec<String>| {
            let m = number::<u64>(raw, name, line, w)?;
            let bytes = m.checked_mul(MIB);
            if bytes.is_none() {
                w.push(format!(
                    "nvidia-smi line {line}: `{name}` is out of range: `{m}` MiB"
                ));
            }
            bytes
        };
        match field {
            Field::Index => {}
            Field::Name => gpu.name = text(),
            Field::Uuid => gpu.uuid = text(),
            Field::DriverVersion => {
                if parsed.driver_version.is_none() {
                    parsed.driver_version = text();
                }
            }
            Field::PciBusId => gpu.pci_bus_id = text(),
            Field::ComputeCap => gpu.compute_capability = text(),
            Field::PcieGeneration => gpu.pcie_generation = number(raw, name, line, w),
            Field::PcieMaxGeneration => gpu.pcie_max_generation = number(raw, name, line, w),
            Field::PcieLinkWidth => gpu.pcie_link_width = number(raw, name, line, w),
            Field::PcieMaxLinkWidth => gpu.pcie_max_link_width = number(raw, name, line, w),
            Field::Utilization => gpu.utilization_percent = number(raw, name, line, w),
            Field::MemoryUtilization => gpu.memory_utilization_percent = number(raw, name, line, w),
            Field::EncoderUtilization => {
                gpu.encoder_utilization_percent = number(raw, name, line, w)
            }
            Field::DecoderUtilization => {
                gpu.decoder_utilization_percent = number(raw, name, line, w)
            }
            Field::JpegUtilization => gpu.jpeg_utilization_percent = number(raw, name, line, w),
            Field::OfaUtilization => gpu.ofa_utilization_percent = number(raw, name, line, w),
            Field::EncoderSessions => gpu.encoder_sessions = number(raw, name, line, w),
            Field::MemoryTotal => gpu.memory_total_bytes = mib(w),
            Field::MemoryUsed => gpu.memory_used_bytes = mib(w),
            Field::MemoryFree => gpu.memory_free_bytes = mib(w),
            Field::MemoryReserved => gpu.memory_reserved_bytes = mib(w),
            Field::Temperature => gpu.temperature_celsius = number(raw, name, line, w),
            Field::MemoryTemperature => gpu.memory_temperature_celsius = number(raw, name, line, w),
            Field::PowerDraw => gpu.power_draw_watts = number(raw, name, line, w),
            Field::PowerLimit => gpu.power_limit_watts = number(raw, name, line, w),
            Field::PowerDefaultLimit => gpu.power_default_limit_watts = number(raw, name, line, w),
            Field::PowerMaxLimit => gpu.power_max_limit_watts = number(raw, name, line, w),
            Field::FanSpeed => {
                gpu.fan_speed_percent = number(raw, name, line, w);
                // nvidia-smi reports the first fan only.
                gpu.fan_speeds_percent = gpu.fan_speed_percent.into_iter().collect();
            }
            Field::GraphicsClock => gpu.graphics_clock_mhz = number(raw, name, line, w),
            Field::MemoryClock => gpu.memory_clock_mhz = number(raw, name, line, w),
            Field::PerformanceState => {
                gpu.performance_state = text().filter(|p| p.starts_with('P'))
            }
            Field::PersistenceMode => gpu.persistence_mode = flag(raw),
            Field::ComputeMode => gpu.compute_mode = compute_mode(raw),
            Field::VbiosVersion => gpu.vbios_version = text(),
            Field::MigCurrent => mig_current = flag(raw),
            Field::MigPending => mig_pending = flag(raw),
            Field::EccCurrent => ecc_current = flag(raw),
            Field::EccPending => ecc_pending = flag(raw),
            Field::EccCorrectedVolatile => ecc.corrected_volatile = number(raw, name, line, w),
            Field::EccUncorrectedVolatile => ecc.uncorrected_volatile = number(raw, name, line, w),
            Field::EccCorrectedAggregate => ecc.corrected_aggregate = number(raw, name, line, w),
            Field::EccUncorrectedAggregate => {
                ecc.uncorrected_aggregate = number(raw, name, line, w)
            }
            Field::RetiredSingleBit => ecc.retired_pages_single_bit = number(raw, name, line, w),
            Field::RetiredDoubleBit => ecc.retired_pages_double_bit = number(raw, name, line, w),
            Field::RetiredPending => ecc.retired_pages_pending = flag(raw),
            Field::RemappedCorrectable => {
                ecc.remapped_rows_correctable = number(raw, name, line, w)
            }
            Field::RemappedUncorrectable => {
                ecc.remapped_rows_uncorrectable = number(raw, name, line, w)
            }
            Field::RemappedPending => ecc.remapped_rows_pending = flag(raw),
            Field::RemappedFailure => ecc.remapped_rows_failure = flag(raw),
            Field::ThrottleActive => {
                gpu.throttle_reasons = hex_mask(raw).map(ThrottleReason::from_mask)
            }
            Field::ThrottlePowerCap => throttle.power = us(raw, name, w),
            Field::ThrottleSwThermal | Field::ThrottleHwThermal => {
                if let Some(s) = us(raw, name, w) {
                    throttle.thermal = Some(throttle.thermal.unwrap_or(0.0) + s);
                }
            }
            Field::ThrottleSyncBoost => throttle.sync_boost = us(raw, name, w),
            Field::ThrottlePowerBrake => throttle.board_limit = us(raw, name, w),
        }
    }
    gpu.mig_mode = mig_current.map(|enabled| MigMode {
        enabled,
        pending_enabled: mig_pending.unwrap_or(enabled),
    });
    if let Some(enabled) = ecc_current {
        ecc.enabled = enabled;
        ecc.pending_enabled = ecc_pending.unwrap_or(enabled);
        gpu.ecc = Some(ecc);
    }
    gpu.throttle_seconds = (throttle != ThrottleSeconds::default()).then_some(throttle);
    gpu.memory_used_percent = match (gpu.memory_used_bytes, gpu.memory_total_bytes) {
        (Some(used), Some(total)) if total > 0 => Some(used as f64 * 100.0 / total as f64),
        _ => None,
    };
    Some(gpu)
}

/// The field nvidia-smi refused, from `Field "compute_cap" is not a valid field to query.`
pub fn parse_invalid_field(message: &str) -> Option<&str> {
    let rest = &message[message.find("Field \"")? + "Field \"".len()..];
    let (name, tail) = rest.split_once('"')?;
    tail.trim_start()
        .starts_with("is not a valid field")
        .then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../../tests/fixtures/gpu/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn chosen(help: &str) -> Vec<(Field, &'static str)> {
        choose(Some(&parse_help(&fixture(help))))
    }

    fn name_of(columns: &[(Field, &'static str)], f: Field) -> Option<&'static str> {
        columns.iter().find(|(x, _)| *x == f).map(|(_, n)| *n)
    }

    /// Guards the choice of names from real `--help-query-gpu` outputs: 610 renamed
    /// `driver_version` to `kmd_version` and both know `pcie.link.gen.gpucurrent`; the
    /// deprecated names are not asked for where the new ones exist; a field the driver does
    /// not list is left out; without help the oldest names are used.
    #[test]
    fn chooses_names_the_installed_driver_knows() {
        let new = chosen("smi/help-query-gpu-610.43.02.txt");
        assert_eq!(name_of(&new, Field::DriverVersion), Some("kmd_version"));
        assert_eq!(
            name_of(&new, Field::PcieGeneration),
            Some("pcie.link.gen.gpucurrent")
        );
        assert_eq!(
            name_of(&new, Field::ThrottleActive),
            Some("clocks_event_reasons.active")
        );
        assert_eq!(
            name_of(&new, Field::PowerLimit),
            Some("enforced.power.limit")
        );
        assert_eq!(
            name_of(&new, Field::RetiredSingleBit),
            Some("retired_pages.single_bit_ecc.count")
        );
        let arg = query_gpu_arg(&new);
        for deprecated in [
            "driver_version",
            "pcie.link.gen.current,",
            "clocks_throttle_reasons",
            "power.limit,",
        ] {
            assert!(
                !arg.contains(&format!("={deprecated}"))
                    && !arg.contains(&format!(",{deprecated}")),
                "{deprecated} in {arg}"
            );
        }

        let old = chosen("smi/help-query-gpu-580.173.02.txt");
        assert_eq!(name_of(&old, Field::DriverVersion), Some("driver_version"));
        assert_eq!(
            name_of(&old, Field::PcieGeneration),
            Some("pcie.link.gen.gpucurrent")
        );
        // The 580 excerpt lists no ECC or power columns: they are not asked for.
        assert_eq!(name_of(&old, Field::EccCurrent), None);
        assert_eq!(name_of(&old, Field::PowerLimit), None);

        let blind = choose(None);
        assert_eq!(
            name_of(&blind, Field::DriverVersion),
            Some("driver_version")
        );
        assert_eq!(
            name_of(&blind, Field::PcieGeneration),
            Some("pcie.link.gen.current")
        );
        assert_eq!(blind.len(), Field::ALL.len());
    }

    /// Guards the real output of an H200 in MIG mode (driver 610, with units): `[N/A]`
    /// utilization empty, MIG on, ECC on with zero counts, retired pages and remapped rows
    /// `[N/A]`, no throttle
    /// reason active, power limits in watts, reserved memory.
    #[test]
    fn parses_a_real_h200_in_mig_mode() {
        let parsed = parse_query_gpu(&fixture("smi/query-gpu-h200-mig-610.43.02.csv"));
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        assert_eq!(parsed.driver_version.as_deref(), Some("610.43.02"));
        let g = &parsed.gpus[0];
        assert_eq!(g.name.as_deref(), Some("NVIDIA H200"));
        assert_eq!(g.pci_bus_id.as_deref(), Some("00000000:83:00.0"));
        assert_eq!(g.compute_capability.as_deref(), Some("9.0"));
        assert_eq!(g.pcie_generation, Some(5));
        assert_eq!(g.utilization_percent, None, "[N/A] in MIG mode");
        assert_eq!(g.encoder_utilization_percent, None);
        assert_eq!(
            g.mig_mode,
            Some(MigMode {
                enabled: true,
                pending_enabled: true
            })
        );
        assert_eq!(g.memory_total_bytes, Some(143_771 * MIB));
        assert_eq!(g.memory_reserved_bytes, Some(623 * MIB));
        assert_eq!(g.memory_used_bytes, Some(44 * MIB));
        assert_eq!(g.memory_free_bytes, Some(143_105 * MIB));
        assert_eq!(g.temperature_celsius, Some(40));
        assert_eq!(g.memory_temperature_celsius, Some(39));
        assert_eq!(g.power_draw_watts, Some(130.44));
        assert_eq!(g.power_limit_watts, Some(700.0));
        assert_eq!(g.power_default_limit_watts, Some(700.0));
        assert_eq!(g.power_max_limit_watts, Some(700.0));
        assert_eq!(g.persistence_mode, Some(true));
        assert_eq!(g.compute_mode, Some(ComputeMode::Default));
        assert_eq!(g.vbios_version.as_deref(), Some("96.00.A5.00.03"));
        assert_eq!(g.throttle_reasons, Some(vec![]));
        assert_eq!(g.graphics_clock_mhz, Some(1980));
        assert_eq!(g.memory_clock_mhz, Some(3201));
        let ecc = g.ecc.expect("ECC");
        assert!(ecc.enabled && ecc.pending_enabled);
        assert_eq!(ecc.corrected_volatile, Some(0));
        assert_eq!(ecc.uncorrected_aggregate, Some(0));
        // Hopper remaps rows instead of retiring pages; in MIG mode both read `[N/A]`.
        assert_eq!(ecc.retired_pages_single_bit, None);
        assert_eq!(ecc.retired_pages_pending, None);
        assert_eq!(ecc.remapped_rows_correctable, None);
        assert_eq!(ecc.remapped_rows_pending, None);
    }

    /// Guards the real output of a GeForce encoding video (driver 610, with units): 8 % GPU
    /// but 100 % encoder and two sessions, the power-cap counter in seconds, no ECC.
    #[test]
    fn parses_a_real_geforce_under_encoder_load() {
        let parsed = parse_query_gpu(&fixture("smi/query-gpu-rtx2080super-610.57.04-load.csv"));
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        let g = &parsed.gpus[0];
        assert_eq!(g.name.as_deref(), Some("NVIDIA GeForce RTX 2080 SUPER"));
        assert_eq!(g.utilization_percent, Some(8));
        assert_eq!(g.encoder_utilization_percent, Some(100));
        assert_eq!(g.decoder_utilization_percent, Some(0));
        assert_eq!(g.jpeg_utilization_percent, Some(0));
        assert_eq!(g.ofa_utilization_percent, Some(0));
        assert_eq!(g.encoder_sessions, Some(2));
        assert_eq!(g.fan_speed_percent, Some(38));
        assert_eq!(g.memory_temperature_celsius, None);
        assert_eq!(g.power_draw_watts, Some(98.14));
        assert_eq!(g.power_limit_watts, Some(250.0));
        assert_eq!(g.power_max_limit_watts, Some(350.0));
        assert_eq!(g.persistence_mode, Some(false));
        assert_eq!(g.ecc, None, "[N/A] ECC mode on a GeForce");
        assert_eq!(g.mig_mode, None);
        let t = g.throttle_seconds.expect("counters");
        assert_eq!(t.power, Some(15_820.333506));
        assert_eq!(t.thermal, Some(0.0));
    }

    /// Guards `[N/A]`, `[Not Supported]`, `N/A`, deprecation notices and garbage in every
    /// column: each empties its field only, never a panic; a short line is skipped.
    #[test]
    fn survives_absent_and_malformed_values() {
        let header: Vec<&str> = Field::ALL.iter().map(|f| f.names()[0]).collect();
        let absent = [
            "[N/A]",
            "[Not Supported]",
            "N/A",
            "[Requested functionality has been deprecated]",
            "[Unknown Error]",
            "",
            "lots",
            "0xZZ",
            "\u{0}",
        ];
        let mut text = header.join(", ") + "\n";
        for (i, a) in absent.iter().enumerate() {
            let values: Vec<String> = Field::ALL
                .iter()
                .map(|f| {
                    if *f == Field::Index {
                        i.to_string()
                    } else {
                        (*a).to_owned()
                    }
                })
                .collect();
            text += &(values.join(", ") + "\n");
        }
        text += "99, short\n";
        let parsed = parse_query_gpu(&text);
        assert_eq!(parsed.gpus.len(), absent.len(), "{:?}", parsed.warnings);
        for g in &parsed.gpus[..6] {
            assert_eq!(g.utilization_percent, None);
            assert_eq!(g.memory_total_bytes, None);
            assert_eq!(g.ecc, None);
            assert_eq!(g.throttle_reasons, None);
            assert_eq!(g.mig_mode, None);
        }
        let w = parsed.warnings.join("\n");
        assert!(w.contains("`memory.total` is not a number: `lots`"), "{w}");
        assert!(w.contains("skipped: 2 values where the header has"), "{w}");
        assert_eq!(parse_query_gpu(""), ParsedGpus::default());
        assert!(parse_query_gpu("name, uuid\nA, B\n").warnings[0].contains("no `index` column"));
    }

    /// Guards a memory size in MiB whose bytes overflow 64 bits (a panic found by the property
    /// tests): that field is left empty with a warning, the GPU is kept.
    #[test]
    fn an_overflowing_memory_size_is_no_value() {
        let parsed = parse_query_gpu(
            "index, memory.reserved, memory.total\n0, 20000000000000, 17592186044415\n",
        );
        assert_eq!(parsed.gpus.len(), 1, "{:?}", parsed.warnings);
        assert_eq!(parsed.gpus[0].memory_reserved_bytes, None);
        assert_eq!(
            parsed.gpus[0].memory_total_bytes,
            Some(17_592_186_044_415 * MIB)
        );
        assert!(
            parsed.warnings[0].contains("`memory.reserved` is out of range"),
            "{:?}",
            parsed.warnings
        );
    }

    /// Guards recognising an older nvidia-smi's refusal of a column.
    #[test]
    fn recognises_an_unknown_field() {
        assert_eq!(
            parse_invalid_field("Field \"compute_cap\" is not a valid field to query."),
            Some("compute_cap")
        );
        assert_eq!(parse_invalid_field("No devices were found"), None);
        assert_eq!(parse_invalid_field("Field \"x"), None);
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// One generated GPU: the values a line of `--query-gpu` carries for it.
    #[derive(Debug, Clone)]
    struct Gpu {
        name: String,
        uuid: String,
        memory_total_mib: u64,
        memory_used_mib: u64,
        utilization: u32,
        temperature: u32,
        power_centiwatts: u32,
        pstate: u8,
        persistence: bool,
        mode: (&'static str, ComputeMode),
    }

    fn gpu() -> impl Strategy<Value = Gpu> {
        (
            "[A-Za-z][A-Za-z0-9 -]{0,30}[A-Za-z0-9]",
            "GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            0u64..1 << 30,
            0u64..1 << 30,
            0u32..=100,
            0u32..120,
            0u32..100_000,
            0u8..16,
            any::<bool>(),
            prop::sample::select(vec![
                ("Default", ComputeMode::Default),
                ("Exclusive_Process", ComputeMode::ExclusiveProcess),
                ("Prohibited", ComputeMode::Prohibited),
            ]),
        )
            .prop_map(
                |(name, uuid, total, used, util, temp, power, p, pers, mode)| Gpu {
                    name,
                    uuid,
                    memory_total_mib: total,
                    memory_used_mib: used,
                    utilization: util,
                    temperature: temp,
                    power_centiwatts: power,
                    pstate: p,
                    persistence: pers,
                    mode,
                },
            )
    }

    /// The columns of the round trip: (name, unit nvidia-smi prints, value of a GPU).
    type Column = (&'static str, &'static str, fn(u32, &Gpu) -> String);

    fn columns() -> Vec<Column> {
        vec![
            ("index", "", |i, _| i.to_string()),
            ("name", "", |_, g| g.name.clone()),
            ("uuid", "", |_, g| g.uuid.clone()),
            ("memory.total", "MiB", |_, g| g.memory_total_mib.to_string()),
            ("memory.used", "MiB", |_, g| g.memory_used_mib.to_string()),
            ("utilization.gpu", "%", |_, g| g.utilization.to_string()),
            ("temperature.gpu", "", |_, g| g.temperature.to_string()),
            ("power.draw", "W", |_, g| {
                format!(
                    "{}.{:02}",
                    g.power_centiwatts / 100,
                    g.power_centiwatts % 100
                )
            }),
            ("pstate", "", |_, g| format!("P{}", g.pstate)),
            ("persistence_mode", "", |_, g| {
                (if g.persistence { "Enabled" } else { "Disabled" }).to_owned()
            }),
            ("compute_mode", "", |_, g| g.mode.0.to_owned()),
        ]
    }

    /// A header of known columns over rows of as many cells, each any number (past every
    /// integer type included), a hex mask, an absent marker or any text.
    fn hostile_table() -> impl Strategy<Value = String> {
        let names: Vec<&'static str> = Field::ALL.iter().map(|f| f.names()[0]).collect();
        let cell =
            "[0-9]{1,22}( MiB| W| %)?|-?[0-9.e]{1,8}|0x[0-9A-Fa-f]{0,18}|\\[N/A\\]|\\PC{0,8}";
        prop::sample::subsequence(names, 1..12)
            .prop_shuffle()
            .prop_flat_map(move |mut header| {
                if !header.contains(&"index") {
                    header.insert(0, "index");
                }
                let width = header.len();
                (
                    Just(header),
                    prop::collection::vec(prop::collection::vec(cell, width..=width), 0..5),
                )
            })
            .prop_map(|(header, rows)| {
                let mut text = header.join(", ") + "\n";
                for (i, row) in rows.iter().enumerate() {
                    // The index column holds a number, so the other cells are read.
                    let row: Vec<String> = header
                        .iter()
                        .zip(row)
                        .map(|(h, c)| {
                            if *h == "index" {
                                i.to_string()
                            } else {
                                c.clone()
                            }
                        })
                        .collect();
                    text += &(row.join(", ") + "\n");
                }
                text
            })
    }

    proptest! {
        /// Guards that no text panics the `--query-gpu`, `--help-query-gpu` and refusal parsers.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
            let _ = parse_query_gpu(&text);
            let _ = parse_help(&text);
            let _ = parse_invalid_field(&text);
        }

        /// Guards that a header of real columns over values of any kind (numbers past every
        /// integer type included) never panics the parser, and every GPU has a line.
        #[test]
        fn hostile_values_never_panic(text in hostile_table()) {
            let parsed = parse_query_gpu(&text);
            prop_assert!(parsed.gpus.len() < text.lines().count().max(1));
        }

        /// Guards the round trip: GPUs printed as `--format=csv` (with units) or
        /// `csv,nounits`, columns in any order, parse back to their values.
        #[test]
        fn well_formed_csv_round_trips(
            gpus in prop::collection::vec(gpu(), 1..5),
            order in Just(columns()).prop_shuffle(),
            units in any::<bool>(),
        ) {
            let header: Vec<String> = order
                .iter()
                .map(|(name, unit, _)| match (*unit, units) {
                    ("", _) | (_, false) => (*name).to_owned(),
                    (unit, true) => format!("{name} [{unit}]"),
                })
                .collect();
            let mut text = header.join(", ") + "\n";
            for (i, g) in gpus.iter().enumerate() {
                let cells: Vec<String> = order
                    .iter()
                    .map(|(_, unit, value)| {
                        let v = value(i as u32, g);
                        if units && !unit.is_empty() { format!("{v} {unit}") } else { v }
                    })
                    .collect();
                text += &(cells.join(", ") + "\n");
            }
            let parsed = parse_query_gpu(&text);
            prop_assert!(parsed.warnings.is_empty(), "{:?}\n{}", parsed.warnings, text);
            prop_assert_eq!(parsed.gpus.len(), gpus.len());
            for (i, (got, g)) in parsed.gpus.iter().zip(&gpus).enumerate() {
                prop_assert_eq!(got.index, i as u32);
                prop_assert_eq!(got.name.as_deref(), Some(g.name.as_str()));
                prop_assert_eq!(got.uuid.as_deref(), Some(g.uuid.as_str()));
                prop_assert_eq!(got.memory_total_bytes, Some(g.memory_total_mib * MIB));
                prop_assert_eq!(got.memory_used_bytes, Some(g.memory_used_mib * MIB));
                prop_assert_eq!(got.utilization_percent, Some(g.utilization));
                prop_assert_eq!(got.temperature_celsius, Some(g.temperature));
                prop_assert_eq!(got.power_draw_watts, Some(f64::from(g.power_centiwatts) / 100.0));
                prop_assert_eq!(got.performance_state.clone(), Some(format!("P{}", g.pstate)));
                prop_assert_eq!(got.persistence_mode, Some(g.persistence));
                prop_assert_eq!(got.compute_mode, Some(g.mode.1));
            }
        }

        /// Guards the `--help-query-gpu` round trip: every quoted name on a name line is known.
        #[test]
        fn help_round_trips(names in prop::collection::vec(("[a-z_.]{1,30}", prop::option::of("[a-z_.]{1,30}")), 0..20)) {
            let mut text = "List of valid properties to query for the switch \"--query-gpu=\":\n\n".to_owned();
            for (name, other) in &names {
                match other {
                    Some(o) => text += &format!("\"{name}\" or \"{o}\"\nA description.\n\n"),
                    None => text += &format!("\"{name}\"\nA description, \"quoted words\" in it.\n\n"),
                }
            }
            let known = parse_help(&text);
            for (name, other) in &names {
                prop_assert!(known.contains(name));
                if let Some(o) = other {
                    prop_assert!(known.contains(o));
                }
            }
        }

        /// Guards the refusal round trip: the field named in nvidia-smi's message.
        #[test]
        fn refusal_round_trips(field in "[a-z_.]{1,30}") {
            let message = format!("Field \"{field}\" is not a valid field to query.\n");
            prop_assert_eq!(parse_invalid_field(&message), Some(field.as_str()));
        }
    }
}
