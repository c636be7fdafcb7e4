//! Verdicts: a figure is judged against its target only when every part of its setup happened; otherwise it is "not measured" with the reason.

use crate::target::{Judgement, Target};

/// How a figure compares with its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Within the target.
    Met,
    /// Outside the target.
    Missed,
    /// No target: a figure for information.
    Info,
    /// Not measured, with the reason.
    NotMeasured(String),
}

impl Verdict {
    /// The verdict's text in the table.
    pub fn text(&self) -> String {
        match self {
            Verdict::Met => "met".to_owned(),
            Verdict::Missed => "MISSED".to_owned(),
            Verdict::Info => "-".to_owned(),
            Verdict::NotMeasured(why) => format!("not measured: {why}"),
        }
    }
}

/// What one figure measured (its values, in its target's order) and every part of its setup
/// that did not happen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    /// The measured values, one per limit of the target.
    pub values: Vec<f64>,
    /// Why the values cannot be judged, one reason per missing part of the setup.
    pub unmet: Vec<String>,
}

impl Reading {
    /// Values whose setup has not been checked yet.
    pub fn of(values: Vec<f64>) -> Reading {
        Reading {
            values,
            unmet: Vec::new(),
        }
    }

    /// Nothing measured, for this reason.
    pub fn nothing(why: impl Into<String>) -> Reading {
        Reading {
            values: Vec::new(),
            unmet: vec![why.into()],
        }
    }

    /// Adds a part of the setup: `Err(why)` when it did not happen.
    pub fn require(mut self, setup: Result<(), String>) -> Reading {
        if let Err(why) = setup {
            self.unmet.push(why);
        }
        self
    }

    /// The verdict against `target`: "not measured" while any part of the setup is missing.
    pub fn verdict(&self, target: &Target) -> Verdict {
        if !self.unmet.is_empty() {
            return Verdict::NotMeasured(self.unmet.join("; "));
        }
        match target.judge(&self.values) {
            Judgement::Met => Verdict::Met,
            Judgement::Missed => Verdict::Missed,
            Judgement::NoValue(why) => Verdict::NotMeasured(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::IDLE_1S;

    /// Guards the rule itself: a value inside the target is still "not measured" when its setup is missing.
    #[test]
    fn missing_setup_overrides_a_good_value() {
        let good = Reading::of(vec![0.1]);
        assert_eq!(good.verdict(&IDLE_1S), Verdict::Met);
        let r = good
            .require(Ok(()))
            .require(Err("a".to_owned()))
            .require(Err("b".to_owned()));
        assert_eq!(r.verdict(&IDLE_1S), Verdict::NotMeasured("a; b".to_owned()));
        assert_eq!(
            Reading::nothing("why").verdict(&IDLE_1S).text(),
            "not measured: why"
        );
    }
}
