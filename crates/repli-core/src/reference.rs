//! Reference data: the métropole's communes and the loan conventions they signed, parsed from
//! CSV text (the files live in `inventory/`; reading them is the caller's business).
//! Parsing reports every error at once as `file:line: message`, and returns nothing on error.

use std::collections::HashSet;

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::insee::InseeCode;
use crate::text;

/// One member commune of the métropole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commune {
    pub insee: InseeCode,
    pub name: String,
    pub population: u32,
}

/// A signed « convention de mise à disposition » between the métropole and a commune.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Convention {
    pub insee: InseeCode,
    pub signed_on: Date,
    /// Reference of the municipal council's deliberation approving it.
    pub deliberation_ref: String,
}

/// Every problem found in a reference file, each as `file:line: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .errors.join("\n"))]
pub struct ReferenceError {
    pub errors: Vec<String>,
}

/// Largest reference file accepted, in bytes.
pub const MAX_REFERENCE_BYTES: usize = 4 << 20;

fn records<'a>(
    source: &'a str,
    text: &'a str,
    header: &'a [&'a str],
    errors: &'a mut Vec<String>,
) -> Vec<(u64, csv::StringRecord)> {
    if text.len() > MAX_REFERENCE_BYTES {
        errors.push(format!("{source}: file larger than {MAX_REFERENCE_BYTES} bytes"));
        return Vec::new();
    }
    if let Err(line) = crate::text::csv_quotes_closed(text) {
        errors.push(format!("{source}:{line}: unterminated quote"));
        return Vec::new();
    }
    let mut rdr = csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_bytes());
    match rdr.headers() {
        Ok(h) if h.iter().map(str::trim).eq(header.iter().copied()) => {}
        Ok(h) => {
            errors.push(format!(
                "{source}:1: expected header `{}`, found `{}`",
                header.join(","),
                h.iter().collect::<Vec<_>>().join(",")
            ));
            return Vec::new();
        }
        Err(e) => {
            errors.push(format!("{source}:1: {e}"));
            return Vec::new();
        }
    }
    let mut out = Vec::new();
    for rec in rdr.records() {
        match rec {
            Ok(r) => {
                let line = r.position().map_or(0, csv::Position::line);
                out.push((line, r));
            }
            Err(e) => {
                let line = e.position().map_or(0, csv::Position::line);
                errors.push(format!("{source}:{line}: {e}"));
            }
        }
    }
    out
}

/// Parses `insee,name,population`.
pub fn parse_communes(source: &str, text: &str) -> Result<Vec<Commune>, ReferenceError> {
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (line, r) in records(source, text, &["insee", "name", "population"], &mut errors) {
        let insee = match InseeCode::parse(r[0].trim()) {
            Ok(c) => c,
            Err(e) => {
                errors.push(format!("{source}:{line}: {e}"));
                continue;
            }
        };
        if !seen.insert(insee.clone()) {
            errors.push(format!("{source}:{line}: duplicate INSEE code {insee}"));
            continue;
        }
        let name = match text::name("name", &r[1]) {
            Ok(n) => n,
            Err(e) => {
                errors.push(format!("{source}:{line}: {e}"));
                continue;
            }
        };
        match r[2].trim().parse::<u32>() {
            Ok(population) => out.push(Commune { insee, name, population }),
            Err(_) => errors.push(format!("{source}:{line}: population must be a whole number, found `{}`", &r[2])),
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(ReferenceError { errors }) }
}

/// Parses `insee,signed_on,deliberation_ref`; every INSEE code must be one of `communes`.
pub fn parse_conventions(source: &str, text: &str, communes: &[Commune]) -> Result<Vec<Convention>, ReferenceError> {
    let known: HashSet<&InseeCode> = communes.iter().map(|c| &c.insee).collect();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (line, r) in records(source, text, &["insee", "signed_on", "deliberation_ref"], &mut errors) {
        let insee = match InseeCode::parse(r[0].trim()) {
            Ok(c) => c,
            Err(e) => {
                errors.push(format!("{source}:{line}: {e}"));
                continue;
            }
        };
        if !known.contains(&insee) {
            errors.push(format!("{source}:{line}: {insee} is not a commune of the métropole"));
            continue;
        }
        if !seen.insert(insee.clone()) {
            errors.push(format!("{source}:{line}: duplicate convention for {insee}"));
            continue;
        }
        let signed_on = match r[1].trim().parse::<Date>() {
            Ok(d) => d,
            Err(_) => {
                errors.push(format!("{source}:{line}: signed_on must be a date YYYY-MM-DD, found `{}`", &r[1]));
                continue;
            }
        };
        match text::name("deliberation_ref", &r[2]) {
            Ok(deliberation_ref) => out.push(Convention { insee, signed_on, deliberation_ref }),
            Err(e) => errors.push(format!("{source}:{line}: {e}")),
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(ReferenceError { errors }) }
}

/// The communes of the métropole, as shipped in `inventory/communes.csv`.
pub const EMBEDDED_COMMUNES: &str = include_str!("../../../inventory/communes.csv");
/// The signed conventions, as shipped in `inventory/conventions.csv`.
pub const EMBEDDED_CONVENTIONS: &str = include_str!("../../../inventory/conventions.csv");

#[cfg(test)]
mod tests {
    use super::*;

    const COMMUNES: &str = "insee,name,population\n13005,Aubagne,47529\n84089,Pertuis,19548\n";

    #[test]
    fn parses_communes() {
        let c = parse_communes("c.csv", COMMUNES).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].insee.as_str(), "84089");
    }

    #[test]
    fn reports_every_error_with_its_line() {
        let text = "insee,name,population\n13005,Aubagne,47529\n1300,Bad,1\n13005,Dup,2\n13007,Auriol,many\n13008,,5\n";
        let e = parse_communes("c.csv", text).unwrap_err();
        assert_eq!(e.errors.len(), 4, "{e}");
        assert!(e.errors[0].starts_with("c.csv:3:"), "{e}");
        assert!(e.errors[1].starts_with("c.csv:4: duplicate"), "{e}");
        assert!(e.errors[2].starts_with("c.csv:5:"), "{e}");
        assert!(e.errors[3].starts_with("c.csv:6:"), "{e}");
    }

    #[test]
    fn wrong_header_is_an_error() {
        assert!(parse_communes("c.csv", "code,nom,pop\n13005,Aubagne,1\n").is_err());
        assert!(parse_communes("c.csv", "").is_err());
    }

    #[test]
    fn conventions_must_name_known_communes() {
        let communes = parse_communes("c.csv", COMMUNES).unwrap();
        let ok = parse_conventions("v.csv", "insee,signed_on,deliberation_ref\n13005,2023-12-14,DCM-1\n", &communes)
            .unwrap();
        assert_eq!(ok[0].signed_on, jiff::civil::date(2023, 12, 14));
        let bad = "insee,signed_on,deliberation_ref\n13001,2024-01-01,D\n13005,14/12/2023,D\n84089,2024-01-01,D\n84089,2024-01-02,D\n";
        let e = parse_conventions("v.csv", bad, &communes).unwrap_err();
        assert_eq!(e.errors.len(), 3, "{e}");
        assert!(e.errors[2].contains("v.csv:5: duplicate"), "{e}");
    }

    #[test]
    fn oversized_file_is_refused() {
        let big = format!("insee,name,population\n{}", "13005,A,1\n".repeat(MAX_REFERENCE_BYTES / 8));
        assert!(parse_communes("c.csv", &big).is_err());
    }
}
