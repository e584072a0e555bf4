//! Exercises (drills): crises that run the real playbooks and the real engine, marked
//! « EXERCICE » everywhere, never counted in the SLA report, and never holding equipment a real
//! crisis needs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The mark every page, document and notification of an exercise carries.
pub const MARK: &str = "EXERCICE";

/// The first sequence number of an exercise's crisis id in a year (`13005-2026-901`): real
/// crises keep their own numbering, without gaps, and an exercise's id says what it is.
pub const FIRST_SEQ: u32 = 901;

/// Longest exercise name, in characters.
pub const NAME_MAX: usize = 200;
/// Most communes one exercise may involve (the métropole has 92).
pub const MAX_COMMUNES: usize = 92;
/// Most addresses an exercise may reach besides its communes' contacts.
pub const MAX_RECIPIENTS: usize = 50;
/// Most timed injects in one scenario.
pub const MAX_INJECTS: usize = 100;
/// The latest an inject may come: a week after the start, in minutes.
pub const MAX_INJECT_MINUTES: u32 = 7 * 24 * 60;
/// Longest inject text, in characters.
pub const INJECT_MAX: usize = crate::text::SHORT_TEXT_MAX;

/// How an exercise treats equipment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExerciseMode {
    /// Equipment is only counted: nothing is reserved, nothing leaves the stock.
    TableTop,
    /// Equipment is reserved for real, until a real crisis needs it.
    Physical,
}

impl ExerciseMode {
    pub const ALL: [ExerciseMode; 2] = [Self::TableTop, Self::Physical];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::TableTop => "table_top",
            Self::Physical => "physical",
        }
    }

    pub fn label_fr(self) -> &'static str {
        match self {
            Self::TableTop => "sur table (le matériel est seulement compté)",
            Self::Physical => "réel (le matériel est réservé, repris par une crise réelle)",
        }
    }
}

impl fmt::Display for ExerciseMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not an exercise mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mode d'exercice inconnu (table_top ou physical)")]
pub struct UnknownMode;

impl FromStr for ExerciseMode {
    type Err = UnknownMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|m| m.as_str() == s).ok_or(UnknownMode)
    }
}

/// What an inject does to the exercise's simulated tenant, besides its message: the drill then
/// meets the failure for real, through the real playbooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InjectEffect {
    /// Only this many licences of each SKU stay free from then on (« 10 licences manquantes »);
    /// a later inject with a larger number buys them back.
    LicencesAvailable(u32),
}

impl InjectEffect {
    /// What the main courante says of it.
    pub fn label_fr(&self) -> String {
        match self {
            Self::LicencesAvailable(0) => "plus aucune licence libre sur le locataire d'exercice".to_owned(),
            Self::LicencesAvailable(n) => {
                format!("{n} licence(s) libre(s) de chaque offre sur le locataire d'exercice")
            }
        }
    }
}

/// What marks a crisis as part of an exercise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExerciseTag {
    pub id: i64,
    pub name: String,
    pub mode: ExerciseMode,
}

impl ExerciseTag {
    /// The banner a page or document of this exercise carries.
    pub fn banner(&self) -> String {
        format!("{MARK} — {} — aucune valeur opérationnelle", self.name)
    }
}

/// The subject or body of an exercise's notification: prefixed, so that no one mistakes it for
/// a real crisis.
pub fn prefixed(text: &str) -> String {
    let mark = format!("[{MARK}]");
    if text.starts_with(&mark) { text.to_owned() } else { format!("{mark} {text}") }
}

/// Whether `address` (a phone in E.164 or an e-mail address) is one of `allowed`: e-mail
/// addresses compare without regard to case.
pub fn may_reach(allowed: &[String], address: &str) -> bool {
    allowed.iter().any(|a| a == address || (a.contains('@') && a.eq_ignore_ascii_case(address)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_is_added_once() {
        assert_eq!(prefixed("Kit prêt"), "[EXERCICE] Kit prêt");
        assert_eq!(prefixed("[EXERCICE] Kit prêt"), "[EXERCICE] Kit prêt");
    }

    #[test]
    fn only_named_addresses_are_reached() {
        let allowed = vec!["+33612345678".to_owned(), "Anne@Exemple.fr".to_owned()];
        assert!(may_reach(&allowed, "+33612345678"));
        assert!(may_reach(&allowed, "anne@exemple.fr"));
        assert!(!may_reach(&allowed, "+33612345679"));
        assert!(!may_reach(&allowed, "astreinte@metropole.fr"));
        assert!(!may_reach(&[], "+33612345678"));
    }

    #[test]
    fn modes_round_trip() {
        for m in ExerciseMode::ALL {
            assert_eq!(m.as_str().parse::<ExerciseMode>(), Ok(m));
        }
        assert!("tabletop".parse::<ExerciseMode>().is_err());
    }
}
