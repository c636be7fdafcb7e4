//! `nvidia-smi --version`: the driver, NVML and CUDA versions, in the forms of drivers before 610 (`CUDA Version`) and from 610 on (`KMD version`, `CUDA UMD version`).

/// The versions `nvidia-smi --version` prints.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Versions {
    /// The kernel-mode driver version, e.g. `610.43.02`.
    pub driver: Option<String>,
    /// The NVML version, e.g. `610.43`.
    pub nvml: Option<String>,
    /// The CUDA version the driver supports, e.g. `13.3`.
    pub cuda: Option<String>,
}

/// A value unless it is a deprecation notice (`Deprecated, see "KMD version" instead`).
fn value(v: &str) -> Option<String> {
    let v = v.trim();
    (!v.is_empty() && !v.starts_with("Deprecated") && super::query::present(v).is_some())
        .then(|| v.to_owned())
}

/// Parses `nvidia-smi --version`; the newer keys win over the deprecated ones in any order.
pub fn parse_version(text: &str) -> Versions {
    let mut out = Versions::default();
    let (mut driver_old, mut cuda_old) = (None, None);
    for line in text.lines() {
        let Some((key, v)) = line.split_once(':') else {
            continue;
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "kmd version" => out.driver = value(v),
            "driver version" => driver_old = value(v),
            "nvml version" => out.nvml = value(v),
            "cuda umd version" => out.cuda = value(v),
            "cuda version" => cuda_old = value(v),
            _ => {}
        }
    }
    out.driver = out.driver.or(driver_old);
    out.cuda = out.cuda.or(cuda_old);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards both forms: before 610 the CUDA line has the value; from 610 it is deprecated and
    /// the value is in `CUDA UMD version` (real outputs in tests/fixtures/gpu/smi/).
    #[test]
    fn reads_both_generations() {
        let old = "NVIDIA-SMI version  : 580.173.02\nNVML version        : 580.173\nDRIVER version      : 580.173.02\nCUDA Version        : 13.0\n";
        assert_eq!(
            parse_version(old),
            Versions {
                driver: Some("580.173.02".into()),
                nvml: Some("580.173".into()),
                cuda: Some("13.0".into())
            }
        );
        assert_eq!(parse_version("garbage\n: \n::::"), Versions::default());
    }
}

#[cfg(test)]
mod real {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../../tests/fixtures/gpu/smi/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Guards the real outputs of drivers 580 and 610 (`CUDA version: Deprecated`, the value
    /// in `CUDA UMD version`, the driver in `KMD version`).
    #[test]
    fn reads_real_outputs() {
        assert_eq!(
            parse_version(&fixture("version-580.173.02.txt")),
            Versions {
                driver: Some("580.173.02".into()),
                nvml: Some("580.173".into()),
                cuda: Some("13.0".into())
            }
        );
        assert_eq!(
            parse_version(&fixture("version-610.43.02.txt")),
            Versions {
                driver: Some("610.43.02".into()),
                nvml: Some("610.43".into()),
                cuda: Some("13.3".into())
            }
        );
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Guards that no text panics the `nvidia-smi --version` parser.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
            let _ = parse_version(&text);
        }

        /// Guards the round trip: the versions printed in the form before 610 or from 610 on
        /// (deprecation notices on the old keys) come back, in any line order.
        #[test]
        fn both_forms_round_trip(
            driver in "[0-9]{3}\\.[0-9]{1,3}(\\.[0-9]{2})?",
            nvml in "[0-9]{2,3}\\.[0-9]{1,3}",
            cuda in "[0-9]{1,2}\\.[0-9]",
            new_form in any::<bool>(),
            order in Just(vec![0usize, 1, 2, 3, 4, 5]).prop_shuffle(),
        ) {
            let lines = if new_form {
                vec![
                    format!("NVIDIA-SMI version  : {driver}"),
                    format!("NVML version        : {nvml}"),
                    "DRIVER version      : Deprecated, see \"KMD version\" instead".to_owned(),
                    "CUDA version        : Deprecated, see \"CUDA UMD version\" instead".to_owned(),
                    format!("KMD version         : {driver}"),
                    format!("CUDA UMD version    : {cuda}"),
                ]
            } else {
                vec![
                    format!("NVIDIA-SMI version  : {driver}"),
                    format!("NVML version        : {nvml}"),
                    format!("DRIVER version      : {driver}"),
                    format!("CUDA Version        : {cuda}"),
                    String::new(),
                    "Some other line : x".to_owned(),
                ]
            };
            let text: String = order.iter().map(|i| format!("{}\n", lines[*i])).collect();
            let want = Versions { driver: Some(driver), nvml: Some(nvml), cuda: Some(cuda) };
            prop_assert_eq!(parse_version(&text), want);
        }
    }
}
