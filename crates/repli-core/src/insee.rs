//! INSEE commune codes (« code officiel géographique »): always a string of five characters,
//! never a number: two département-13 neighbours of the métropole are `83120` and `84089`,
//! and Corsica's codes start with `2A` / `2B`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A syntactically valid INSEE commune code: five digits, or `2A`/`2B` followed by three digits.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, utoipa::ToSchema)]
/// The pattern is exact: it leaves out `00000`, which [`InseeCode::parse`] refuses too.
#[schema(
    value_type = String,
    pattern = "^(0(0(0(0[1-9]|[1-9][0-9])|[1-9][0-9]{2})|[1-9][0-9]{3})|[1-9][0-9]{4}|2[AB][0-9]{3})$",
    example = "13005"
)]
pub struct InseeCode(String);

/// The text given was not an INSEE commune code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("« {shown} » n'est pas un code INSEE de commune (5 caractères, par exemple 13005)")]
pub struct InvalidInsee {
    shown: String,
}

impl InseeCode {
    /// Parses and validates a code. Surrounding white space is not accepted.
    pub fn parse(s: &str) -> Result<Self, InvalidInsee> {
        let b = s.as_bytes();
        let ok = b.len() == 5
            && (b[..2].iter().all(u8::is_ascii_digit) || (b[0] == b'2' && matches!(b[1], b'A' | b'B')))
            && b[2..].iter().all(u8::is_ascii_digit)
            && s != "00000";
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            // Never echo an unbounded or control-laden string back into a message.
            let shown: String = s.chars().filter(|c| !c.is_control()).take(16).collect();
            Err(InvalidInsee { shown })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The département part of the code (`13`, `83`, `84`, `2A`…).
    pub fn departement(&self) -> &str {
        &self.0[..2]
    }
}

impl FromStr for InseeCode {
    type Err = InvalidInsee;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for InseeCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for InseeCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InseeCode({})", self.0)
    }
}

impl Serialize for InseeCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for InseeCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_codes() {
        for c in ["13001", "13055", "83120", "84089", "2A004", "2B033"] {
            assert_eq!(InseeCode::parse(c).unwrap().as_str(), c);
        }
        assert_eq!(InseeCode::parse("84089").unwrap().departement(), "84");
    }

    #[test]
    fn rejects_bad_codes() {
        for c in ["", "1300", "130055", " 13001", "13001 ", "1300A", "2C004", "00000", "１３００１", "13\u{0}01"] {
            assert!(InseeCode::parse(c).is_err(), "{c:?} accepted");
        }
    }

    #[test]
    fn error_message_is_bounded_and_clean() {
        let long = format!("{}\u{7}", "9".repeat(10_000));
        let msg = InseeCode::parse(&long).unwrap_err().to_string();
        assert!(msg.len() < 200);
        assert!(!msg.contains('\u{7}'));
    }

    #[test]
    fn serde_rejects_numbers_and_bad_strings() {
        assert!(serde_json::from_str::<InseeCode>("13001").is_err());
        assert!(serde_json::from_str::<InseeCode>("\"1300\"").is_err());
        assert_eq!(serde_json::from_str::<InseeCode>("\"13001\"").unwrap().as_str(), "13001");
    }
}
