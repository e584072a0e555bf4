//! French formatting of instants, durations and phone numbers, for what people read.

use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

const MONTHS: [&str; 12] = [
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
];

fn weekday(w: Weekday) -> &'static str {
    match w {
        Weekday::Monday => "lundi",
        Weekday::Tuesday => "mardi",
        Weekday::Wednesday => "mercredi",
        Weekday::Thursday => "jeudi",
        Weekday::Friday => "vendredi",
        Weekday::Saturday => "samedi",
        Weekday::Sunday => "dimanche",
    }
}

/// « mercredi 20 mai 2026 à 18 h 00 » in `tz`.
pub fn datetime(t: Timestamp, tz: &TimeZone) -> String {
    let z = t.to_zoned(tz.clone());
    let month = MONTHS.get(usize::from(z.month().unsigned_abs()).saturating_sub(1)).copied().unwrap_or("?");
    format!("{} {} {} {} à {} h {:02}", weekday(z.weekday()), z.day(), month, z.year(), z.hour(), z.minute())
}

/// « 18 h 00 » in `tz`.
pub fn time(t: Timestamp, tz: &TimeZone) -> String {
    let z = t.to_zoned(tz.clone());
    format!("{} h {:02}", z.hour(), z.minute())
}

/// « 46 h 30 » (hours may exceed 24: business durations are counted in hours).
pub fn duration(d: SignedDuration) -> String {
    let mins = d.as_secs().max(0) / 60;
    format!("{} h {:02}", mins / 60, mins % 60)
}

/// A French number in E.164 (`+33612345678`) as people write it: `06 12 34 56 78`.
/// Other numbers are returned as given.
pub fn phone(e164: &str) -> String {
    match e164.strip_prefix("+33") {
        Some(rest) if rest.len() == 9 && rest.bytes().all(|b| b.is_ascii_digit()) => {
            let national = format!("0{rest}");
            national.as_bytes().chunks(2).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" ")
        }
        _ => e164.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let tz = TimeZone::get("Europe/Paris").unwrap();
        let t: Timestamp = "2026-05-20T16:00:00Z".parse().unwrap();
        assert_eq!(datetime(t, &tz), "mercredi 20 mai 2026 à 18 h 00");
        assert_eq!(time(t, &tz), "18 h 00");
        let t: Timestamp = "2026-01-01T07:05:00Z".parse().unwrap();
        assert_eq!(datetime(t, &tz), "jeudi 1 janvier 2026 à 8 h 05");
        assert_eq!(duration(SignedDuration::from_mins(46 * 60 + 30)), "46 h 30");
        assert_eq!(duration(SignedDuration::from_secs(-5)), "0 h 00");
        assert_eq!(phone("+33612345678"), "06 12 34 56 78");
        assert_eq!(phone("+41221234567"), "+41221234567");
    }
}
