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
    format!("{} à {} h {:02}", day(t, tz), z.hour(), z.minute())
}

/// « mardi 1er décembre 2026 » in `tz`.
pub fn day(t: Timestamp, tz: &TimeZone) -> String {
    let z = t.to_zoned(tz.clone());
    format!("{} {}", weekday(z.weekday()), date(z.date()))
}

/// « 14 décembre 2023 », « 1er mars 2026 ».
pub fn date(d: jiff::civil::Date) -> String {
    let month = MONTHS.get(usize::from(d.month().unsigned_abs()).saturating_sub(1)).copied().unwrap_or("?");
    let day = if d.day() == 1 { "1er".to_owned() } else { d.day().to_string() };
    format!("{day} {month} {}", d.year())
}

/// « de » before a commune's name, as French writes it: « d'Aubagne », « d'Aix-en-Provence »,
/// « du Rove » (Le Rove), « des Pennes-Mirabeau » (Les Pennes-Mirabeau), « de La Ciotat »,
/// « de Marseille ».
pub fn de(name: &str) -> String {
    let name = name.trim();
    if let Some(rest) = name.strip_prefix("Le ") {
        return format!("du {rest}");
    }
    if let Some(rest) = name.strip_prefix("Les ") {
        return format!("des {rest}");
    }
    let elided = name.chars().next().is_some_and(|c| {
        matches!(
            c.to_lowercase().next().unwrap_or(c),
            'a' | 'e' | 'i' | 'o' | 'u' | 'y' | 'h' | 'à' | 'â' | 'é' | 'è' | 'ê' | 'î' | 'ô' | 'û'
        )
    });
    if elided { format!("d'{name}") } else { format!("de {name}") }
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

/// An audited action, as stored, in French for people (`crisis.deliver` → « Kit livré »): the
/// label of its [`crate::AuditAction`]; an action without a French label, or a string this
/// version does not know, is shown as it is.
pub fn action(action: &str) -> String {
    action.parse::<crate::AuditAction>().ok().and_then(crate::AuditAction::label_fr).unwrap_or(action).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn de_elides_and_contracts_as_french_does() {
        for (name, said) in [
            ("Aubagne", "d'Aubagne"),
            ("Aix-en-Provence", "d'Aix-en-Provence"),
            ("Istres", "d'Istres"),
            ("Éguilles", "d'Éguilles"),
            ("Marseille", "de Marseille"),
            ("La Ciotat", "de La Ciotat"),
            ("Le Rove", "du Rove"),
            ("Les Pennes-Mirabeau", "des Pennes-Mirabeau"),
            ("", "de "),
        ] {
            assert_eq!(de(name), said);
        }
        let d = |s: &str| s.parse::<jiff::civil::Date>().unwrap();
        assert_eq!(date(d("2023-12-14")), "14 décembre 2023");
        assert_eq!(date(d("2026-03-01")), "1er mars 2026");
    }

    #[test]
    fn formats() {
        let tz = TimeZone::get("Europe/Paris").unwrap();
        let t: Timestamp = "2026-05-20T16:00:00Z".parse().unwrap();
        assert_eq!(datetime(t, &tz), "mercredi 20 mai 2026 à 18 h 00");
        assert_eq!(time(t, &tz), "18 h 00");
        let t: Timestamp = "2026-01-01T07:05:00Z".parse().unwrap();
        assert_eq!(datetime(t, &tz), "jeudi 1er janvier 2026 à 8 h 05");
        assert_eq!(duration(SignedDuration::from_mins(46 * 60 + 30)), "46 h 30");
        assert_eq!(duration(SignedDuration::from_secs(-5)), "0 h 00");
        assert_eq!(phone("+33612345678"), "06 12 34 56 78");
        assert_eq!(phone("+41221234567"), "+41221234567");
    }

    #[test]
    fn audited_actions_read_as_french() {
        assert_eq!(action("crisis.deliver"), "Kit livré");
        assert_eq!(action("engine.step.started"), "Étape commencée");
        assert_eq!(action("log.decision"), "Main courante");
        assert_eq!(action("quelque.chose"), "quelque.chose", "an unknown code stays as it is");
        assert_eq!(crate::inventory::state_label("lent"), "prêté");
        assert_eq!(crate::inventory::state_label("<b>"), "<b>");
    }
}
