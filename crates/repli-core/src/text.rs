//! Validation of what people type: names, free text, phone numbers, e-mail addresses.
//!
//! Each validator returns the normalised value or a [`FieldError`] naming the field with a
//! French message, since the person reading it may be a DGS on a borrowed phone.

use serde::{Deserialize, Serialize};

/// One invalid field: its name (as in the API) and a French explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error, utoipa::ToSchema)]
#[error("{field} : {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self { field: field.to_owned(), message: message.into() }
    }
}

/// Folds a name to lowercase ASCII letters and digits, other runs replaced by `sep`
/// (« Saint-Rémy-de-Provence » → `saint-remy-de-provence`). Used for domain labels and logins.
pub fn ascii_slug(value: &str, sep: char) -> String {
    let mut out = String::with_capacity(value.len());
    let mut pending = false;
    for c in value.chars() {
        let folded: &str = match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' => "a",
            'ç' | 'Ç' => "c",
            'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' | 'Ê' | 'Ë' => "e",
            'ì' | 'í' | 'î' | 'ï' | 'Ì' | 'Í' | 'Î' | 'Ï' => "i",
            'ñ' | 'Ñ' => "n",
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' => "o",
            'ù' | 'ú' | 'û' | 'ü' | 'Ù' | 'Ú' | 'Û' | 'Ü' => "u",
            'ý' | 'ÿ' | 'Ý' | 'Ÿ' => "y",
            'œ' | 'Œ' => "oe",
            'æ' | 'Æ' => "ae",
            'ß' => "ss",
            _ => "",
        };
        let piece = if !folded.is_empty() {
            folded.to_string()
        } else if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase().to_string()
        } else {
            String::new()
        };
        if piece.is_empty() {
            pending = !out.is_empty();
            continue;
        }
        if pending {
            out.push(sep);
            pending = false;
        }
        out.push_str(&piece);
    }
    out
}

/// Account logins (the part before `@`) for a list of full names, in order: `prenom.nom`
/// folded to ASCII, at most 48 characters, a numeric suffix on duplicates (`…2`, `…3`), and
/// `agent` + position for a name with no usable letter. Deterministic, so a re-run derives the
/// same logins and creates nothing twice.
pub fn account_logins<S: AsRef<str>>(names: &[S]) -> Vec<String> {
    let mut seen = std::collections::BTreeMap::<String, u32>::new();
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let words: Vec<String> =
                name.as_ref().split_whitespace().map(|w| ascii_slug(w, '-')).filter(|w| !w.is_empty()).collect();
            let mut base: String = words.join(".");
            base.truncate(48);
            let base = base.trim_end_matches(['.', '-']).to_string();
            let base = if base.is_empty() { format!("agent{}", i + 1) } else { base };
            let n = seen.entry(base.clone()).or_insert(0);
            *n += 1;
            if *n == 1 { base } else { format!("{base}{n}") }
        })
        .collect()
}

/// Longest accepted person or place name, in characters.
pub const NAME_MAX: usize = 120;
/// Longest accepted free-text field (notes, reasons), in characters.
pub const NOTE_MAX: usize = 4000;
/// Longest accepted short text (a delivery address, an inventory reason, an inject), in characters.
pub const SHORT_TEXT_MAX: usize = 500;
/// Longest accepted phone number, as typed (separators included).
pub const PHONE_MAX: usize = 32;
/// Longest accepted e-mail address (RFC 5321).
pub const EMAIL_MAX: usize = 254;
/// Longest accepted local part of an e-mail address (RFC 5321).
pub const EMAIL_LOCAL_MAX: usize = 64;

/// A person's or a site's name: trimmed, 1 to [`NAME_MAX`] characters, no control characters.
pub fn name(field: &str, value: &str) -> Result<String, FieldError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(FieldError::new(field, "ce champ est obligatoire"));
    }
    if v.chars().any(char::is_control) {
        return Err(FieldError::new(field, "caractères de contrôle interdits"));
    }
    if v.chars().any(is_bidi_control) {
        return Err(FieldError::new(field, "caractères de changement de sens d'écriture interdits"));
    }
    if v.chars().count() > NAME_MAX {
        return Err(FieldError::new(field, format!("{NAME_MAX} caractères au plus")));
    }
    Ok(v.to_owned())
}

/// Unicode's bidirectional controls (embeddings, overrides, isolates, marks): in a name or a
/// note they make text display in another order than it is stored (« Trojan Source »), so a
/// printed list or a log line could show something else than what was recorded.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Free text (a note, a reason): trimmed, line breaks normalised to `\n`, tabs allowed,
/// other control characters refused, at most `max` characters. `required` refuses empty text.
pub fn free_text(field: &str, value: &str, max: usize, required: bool) -> Result<String, FieldError> {
    let v = value.replace("\r\n", "\n");
    let v = v.trim();
    if required && v.is_empty() {
        return Err(FieldError::new(field, "ce champ est obligatoire"));
    }
    if v.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(FieldError::new(field, "caractères de contrôle interdits"));
    }
    if v.chars().any(is_bidi_control) {
        return Err(FieldError::new(field, "caractères de changement de sens d'écriture interdits"));
    }
    if v.chars().count() > max {
        return Err(FieldError::new(field, format!("{max} caractères au plus")));
    }
    Ok(v.to_owned())
}

/// A phone number reachable while the commune's own lines may be down: a French national
/// number (`06 12 34 56 78`, `04.42.00.00.00`) or an international one in E.164 (`+33612345678`).
/// Returns it in E.164.
pub fn phone(field: &str, value: &str) -> Result<String, FieldError> {
    let bad = || {
        FieldError::new(
            field,
            "numéro de téléphone invalide : 10 chiffres commençant par 0, ou format international +33…",
        )
    };
    let v = value.trim();
    if v.len() > PHONE_MAX {
        return Err(bad());
    }
    let (plus, rest) = match v.strip_prefix('+') {
        Some(r) => (true, r),
        None => (false, v),
    };
    let mut digits = String::with_capacity(16);
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '.' | '-' => {}
            _ => return Err(bad()),
        }
    }
    if plus {
        // E.164: country code first digit 1-9, 8 to 15 digits in all.
        if (8..=15).contains(&digits.len()) && !digits.starts_with('0') {
            return Ok(format!("+{digits}"));
        }
        return Err(bad());
    }
    if digits.len() == 10 && digits.starts_with('0') && !digits[1..].starts_with('0') {
        return Ok(format!("+33{}", &digits[1..]));
    }
    Err(bad())
}

/// An e-mail address, checked for shape only (it is out-of-band contact, not a login): a
/// printable ASCII local part, a domain of two labels at least.
/// Returned trimmed with the domain lower-cased.
pub fn email(field: &str, value: &str) -> Result<String, FieldError> {
    let bad = || FieldError::new(field, "adresse électronique invalide (exemple : prenom.nom@exemple.fr)");
    let v = value.trim();
    if v.len() > EMAIL_MAX || v.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad());
    }
    let Some((local, domain)) = v.rsplit_once('@') else {
        return Err(bad());
    };
    // The local part is printable ASCII (no SMTPUTF8): its RFC 5321 limit is in octets, and
    // the documented pattern can then count it in characters.
    if local.is_empty()
        || local.len() > EMAIL_LOCAL_MAX
        || !local.chars().all(|c| c.is_ascii_graphic())
        || local.contains(['@', '<', '>', '"', '\'', ',', ';'])
    {
        return Err(bad());
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if labels.len() < 2 || !labels.iter().all(label_ok) {
        return Err(bad());
    }
    Ok(format!("{local}@{}", domain.to_ascii_lowercase()))
}

/// A cell safe to put in a CSV file opened by a spreadsheet: text starting with `=`, `+`, `-`,
/// `@`, a tab or a carriage return is prefixed with `'` so it is never run as a formula
/// (OWASP "CSV injection"). Quoting is the CSV writer's job.
pub fn csv_cell(value: &str) -> std::borrow::Cow<'_, str> {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{value}"))
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

/// Checks that every double quote a CSV text opens is closed (RFC 4180: a quoted field ends
/// with a quote; a doubled quote inside it is one quote). `Err` gives the 1-based line where the
/// unclosed quote opened. The `csv` crate reads such a field to the end of the file instead.
pub fn csv_quotes_closed(text: &str) -> Result<(), usize> {
    let mut line = 1;
    let mut opened_at = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, opened_at) {
            ('"', None) => opened_at = Some(line),
            ('"', Some(_)) if chars.peek() == Some(&'"') => {
                chars.next();
            }
            ('"', Some(_)) => opened_at = None,
            ('\n', _) => line += 1,
            _ => {}
        }
    }
    opened_at.map_or(Ok(()), Err)
}

/// An error message on one line, as a command prints it before exiting: its lines (an error
/// and its causes, a multi-line server answer) joined with « — », blank ones dropped.
pub fn one_line(message: &str) -> String {
    message.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" — ")
}

#[cfg(test)]
mod tests {

    #[test]
    fn errors_print_on_one_line() {
        use super::one_line;
        assert_eq!(one_line("a: b\n\n  Caused by:\n    c\r\n"), "a: b — Caused by: — c");
        assert_eq!(one_line("seule"), "seule");
        assert_eq!(one_line(""), "");
    }

    #[test]
    fn csv_quotes_must_close() {
        assert_eq!(csv_quotes_closed("nom,service\n\"Martin, Anne\",Accueil\n"), Ok(()));
        assert_eq!(csv_quotes_closed("a,\"dit \"\"Jo\"\"\",b\n"), Ok(()));
        assert_eq!(csv_quotes_closed("nom,service\nAnne,Accueil\n\"Luc,État civil\nZoé,Accueil\n"), Err(3));
        assert_eq!(csv_quotes_closed("\"multi\nligne\",x\n"), Ok(()));
        assert_eq!(csv_quotes_closed(""), Ok(()));
    }
    use super::*;

    #[test]
    fn csv_cells_never_start_a_formula() {
        for bad in ["=1+2", "+33612345678", "-2", "@SUM(A1)", "\tx", "\rx"] {
            assert!(csv_cell(bad).starts_with('\''), "{bad:?}");
        }
        assert_eq!(csv_cell("Aubagne"), "Aubagne");
        assert_eq!(csv_cell(""), "");
    }

    #[test]
    fn names() {
        assert_eq!(name("n", "  Marie Curie ").unwrap(), "Marie Curie");
        assert!(name("n", "   ").is_err());
        assert!(name("n", "a\u{1b}[31m").is_err());
        assert!(name("n", &"é".repeat(NAME_MAX + 1)).is_err());
        assert_eq!(name("n", &"é".repeat(NAME_MAX)).unwrap().chars().count(), NAME_MAX);
        // Hostile but printable text is accepted as data; escaping is the renderer's job.
        assert_eq!(name("n", "<script>alert(1)</script>").unwrap(), "<script>alert(1)</script>");
    }

    #[test]
    fn free_texts() {
        assert_eq!(free_text("t", "a\r\nb\tc", 10, true).unwrap(), "a\nb\tc");
        assert!(free_text("t", "", 10, true).is_err());
        assert_eq!(free_text("t", "", 10, false).unwrap(), "");
        assert!(free_text("t", "a\u{0}b", 10, false).is_err());
        assert!(free_text("t", "a\u{202E}b", 10, false).is_err());
        for c in ['\u{202E}', '\u{2066}', '\u{200F}', '\u{061C}'] {
            assert!(name("n", &format!("Anne{c}Martin")).is_err(), "{c:?}");
        }
        assert_eq!(name("n", "Ève-Marie d'Aubagne").unwrap(), "Ève-Marie d'Aubagne");
        assert!(free_text("t", &"x".repeat(11), 10, false).is_err());
    }

    #[test]
    fn phones() {
        assert_eq!(phone("p", "06 12 34 56 78").unwrap(), "+33612345678");
        assert_eq!(phone("p", "04.42.18.19.20").unwrap(), "+33442181920");
        assert_eq!(phone("p", "+33 6 12 34 56 78").unwrap(), "+33612345678");
        assert_eq!(phone("p", "+41 22 123 45 67").unwrap(), "+41221234567");
        for bad in [
            "",
            "12345",
            "0012345678",
            "+0612345678",
            "06 12 34 56 7a",
            "+1234567890123456",
            "=1+2",
            "0612345678901234567890123456789012",
        ] {
            assert!(phone("p", bad).is_err(), "{bad:?} accepted");
        }
        let e = phone("contact.phone", "x").unwrap_err();
        assert_eq!(e.field, "contact.phone");
    }

    #[test]
    fn slugs_and_logins() {
        assert_eq!(ascii_slug("Saint-Rémy-de-Provence", '-'), "saint-remy-de-provence");
        assert_eq!(ascii_slug("  L'Œuvre  Æ ß ", '-'), "l-oeuvre-ae-ss");
        assert_eq!(ascii_slug("<script>", '-'), "script");
        assert_eq!(ascii_slug("日本", '-'), "");
        let logins = account_logins(&["Marie-Hélène Durand", "Jean Dupont", "Jean  Dupont", "日本", "<b>O'Brien</b>"]);
        assert_eq!(logins, ["marie-helene.durand", "jean.dupont", "jean.dupont2", "agent4", "b-o-brien-b"]);
        assert!(account_logins(&["a".repeat(200)])[0].len() <= 48);
    }

    #[test]
    fn emails() {
        assert_eq!(email("e", " DGS@Mairie-Aubagne.FR ").unwrap(), "DGS@mairie-aubagne.fr");
        for bad in ["", "a", "a@b", "@b.fr", "a b@c.fr", "a@-b.fr", "a@b..fr", "<a>@b.fr", "a@b\n.fr", "a@b_c.fr"] {
            assert!(email("e", bad).is_err(), "{bad:?} accepted");
        }
        assert!(email("e", &format!("{}@b.fr", "a".repeat(65))).is_err());
    }
}
