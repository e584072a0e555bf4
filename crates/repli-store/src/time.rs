//! Timestamps in the database: UTC RFC 3339 text at whole-second precision, so that text order
//! is time order and every stored instant has one spelling (the audit hash depends on it).

use jiff::{Timestamp, Unit};

use crate::StoreError;

/// The stored spelling of an instant, e.g. `2026-05-13T08:00:00Z`.
pub fn to_db(t: Timestamp) -> String {
    // Rounding cannot overflow for instants in jiff's range minus one second; fall back to the
    // unrounded spelling rather than fail a write.
    t.round(Unit::Second).unwrap_or(t).to_string()
}

pub fn from_db(column: &'static str, s: &str) -> Result<Timestamp, StoreError> {
    s.parse().map_err(|_| StoreError::Corrupt { column, value: s.to_owned() })
}

pub(crate) fn opt_from_db(column: &'static str, s: Option<String>) -> Result<Option<Timestamp>, StoreError> {
    s.map(|s| from_db(column, &s)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_order_is_time_order() {
        let a: Timestamp = "2026-05-13T08:00:00.9Z".parse().unwrap();
        let b: Timestamp = "2026-05-13T08:00:01Z".parse().unwrap();
        assert_eq!(to_db(a), "2026-05-13T08:00:01Z");
        assert!(to_db(a) <= to_db(b));
        assert_eq!(from_db("x", &to_db(b)).unwrap(), b);
        assert!(from_db("x", "yesterday").is_err());
    }
}
