//! The main courante: a timestamped, attributed chronology of a crisis (ANSSI crisis guidance),
//! kept in the audit chain itself.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The kinds of main-courante entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogKind {
    Information,
    Demande,
    Action,
    Decision,
    PointDeSituation,
    /// An event the exercise's animators inject (exercises only).
    Inject,
}

impl LogKind {
    pub const ALL: [LogKind; 6] =
        [Self::Information, Self::Demande, Self::Action, Self::Decision, Self::PointDeSituation, Self::Inject];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Information => "information",
            Self::Demande => "demande",
            Self::Action => "action",
            Self::Decision => "decision",
            Self::PointDeSituation => "point_de_situation",
            Self::Inject => "inject",
        }
    }

    pub fn label_fr(self) -> &'static str {
        match self {
            Self::Information => "Information",
            Self::Demande => "Demande",
            Self::Action => "Action",
            Self::Decision => "Décision",
            Self::PointDeSituation => "Point de situation",
            Self::Inject => "Inject d'exercice",
        }
    }
}

impl fmt::Display for LogKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not a main-courante kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("type inconnu : information, demande, action, décision, point de situation ou inject (exercice)")]
pub struct UnknownLogKind;

impl FromStr for LogKind {
    type Err = UnknownLogKind;
    /// Accepts the API names and the French labels, with or without accents and case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm: String = s
            .trim()
            .to_lowercase()
            .chars()
            .map(|c| match c {
                'é' | 'è' | 'ê' => 'e',
                ' ' | '-' => '_',
                c => c,
            })
            .collect();
        Self::ALL.into_iter().find(|k| k.as_str() == norm).ok_or(UnknownLogKind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_from_french() {
        assert_eq!("décision".parse::<LogKind>(), Ok(LogKind::Decision));
        assert_eq!("Point de situation".parse::<LogKind>(), Ok(LogKind::PointDeSituation));
        assert_eq!("point_de_situation".parse::<LogKind>(), Ok(LogKind::PointDeSituation));
        assert!("rumeur".parse::<LogKind>().is_err());
    }
}
