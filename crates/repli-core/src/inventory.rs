//! The métropole's equipment pool: kinds, states, identifiers (IMEI, ICCID), and CSV parsing
//! (Repli's own columns, or a Snipe-IT asset export's), all errors at once as `file:line: …`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::reference::{MAX_REFERENCE_BYTES, ReferenceError};
use crate::text::{self, FieldError};

/// How an item came back (the one parse of it: API, pages, CLI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    Ok,
    Damaged,
    Missing,
}

impl Condition {
    pub const ALL: [Condition; 3] = [Self::Ok, Self::Damaged, Self::Missing];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Damaged => "damaged",
            Self::Missing => "missing",
        }
    }

    /// In French, for people.
    pub fn label_fr(self) -> &'static str {
        match self {
            Self::Ok => "en bon état",
            Self::Damaged => "endommagé",
            Self::Missing => "manquant",
        }
    }
}

impl FromStr for Condition {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| FieldError::new("condition", "ok, damaged ou missing"))
    }
}

/// Laptops the deliberation lends at most (délibération du 12 octobre 2023).
pub const MAX_LAPTOPS: u32 = 50;

/// Equipment asked for, per kind (SIM cards follow phones and routers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct KitNeeds {
    /// At most [`MAX_LAPTOPS`].
    #[schema(maximum = 50)]
    pub laptop: u32,
    /// At most [`MAX_PER_KIND`], like phones and printers.
    #[schema(maximum = 100)]
    pub router: u32,
    #[schema(maximum = 100)]
    pub phone: u32,
    #[schema(maximum = 100)]
    pub printer: u32,
}

/// What a request asked for, per kind (SIMs follow phones and routers); the default is a laptop
/// per agent up to [`MAX_LAPTOPS`], a router and a printer.
pub fn kit_needs(needs: Option<KitNeeds>, agents: u32) -> Result<Vec<(ItemKind, u32)>, FieldError> {
    let n = needs.unwrap_or(KitNeeds { laptop: agents.min(MAX_LAPTOPS), router: 1, phone: 0, printer: 1 });
    if n.laptop > MAX_LAPTOPS {
        return Err(FieldError::new(
            "needs.laptop",
            format!("{MAX_LAPTOPS} ordinateurs portables au plus (délibération du 12 octobre 2023)"),
        ));
    }
    for (field, v) in [("needs.router", n.router), ("needs.phone", n.phone), ("needs.printer", n.printer)] {
        if v > MAX_PER_KIND {
            return Err(FieldError::new(field, format!("{MAX_PER_KIND} au plus")));
        }
    }
    Ok(vec![
        (ItemKind::Laptop, n.laptop),
        (ItemKind::Router, n.router),
        (ItemKind::Phone, n.phone),
        (ItemKind::Sim, n.phone + n.router),
        (ItemKind::Printer, n.printer),
    ])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    Laptop,
    Router,
    Phone,
    Sim,
    Printer,
}

impl ItemKind {
    pub const ALL: [ItemKind; 5] = [Self::Laptop, Self::Router, Self::Phone, Self::Sim, Self::Printer];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Laptop => "laptop",
            Self::Router => "router",
            Self::Phone => "phone",
            Self::Sim => "sim",
            Self::Printer => "printer",
        }
    }

    pub fn label_fr(self) -> &'static str {
        match self {
            Self::Laptop => "ordinateur portable",
            Self::Router => "routeur 4G/5G",
            Self::Phone => "téléphone mobile",
            Self::Sim => "carte SIM",
            Self::Printer => "imprimante",
        }
    }

    /// Lent to a named agent (the others go to the commune).
    pub fn is_personal(self) -> bool {
        matches!(self, Self::Laptop | Self::Phone)
    }

    /// Holds an agent's data: back from a loan, it returns to stock through a certified wipe.
    /// The other kinds (router, SIM, printer) return through a check (`inventory.check`); they
    /// may be wiped too, a wipe being more than a check.
    pub fn needs_wipe(self) -> bool {
        matches!(self, Self::Laptop | Self::Phone)
    }

    /// The kinds that return through a wipe, as SQL's `IN (…)` list (the reception gate's).
    pub const WIPED_SQL: &'static str = "('laptop', 'phone')";
}

impl fmt::Display for ItemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not an item kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("type inconnu « {0} » (laptop, router, phone, sim, printer)")]
pub struct UnknownKind(pub String);

impl FromStr for ItemKind {
    type Err = UnknownKind;
    /// Accepts Repli's names and the usual Snipe-IT category names, in English or French.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let k = s.trim().to_lowercase();
        Ok(match k.as_str() {
            "laptop" | "laptops" | "ordinateur portable" | "ordinateurs portables" | "pc portable" | "notebook" => {
                Self::Laptop
            }
            "router" | "routers" | "routeur" | "routeurs" | "routeur 4g/5g" | "4g router" | "5g router"
            | "modem 4g" => Self::Router,
            "phone" | "phones" | "mobile phone" | "mobile phones" | "smartphone" | "smartphones" | "téléphone"
            | "téléphones" | "téléphone mobile" => Self::Phone,
            "sim" | "sims" | "sim card" | "sim cards" | "carte sim" | "cartes sim" => Self::Sim,
            "printer" | "printers" | "imprimante" | "imprimantes" => Self::Printer,
            _ => return Err(UnknownKind(s.chars().filter(|c| !c.is_control()).take(40).collect())),
        })
    }
}

/// The states of an item: `available → reserved → prepared → lent → returned → wiping →
/// available`, plus `maintenance`, `lost` and `retired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemState {
    Available,
    Reserved,
    Prepared,
    Lent,
    Returned,
    Wiping,
    Maintenance,
    Lost,
    Retired,
}

impl ItemState {
    pub const ALL: [ItemState; 9] = [
        Self::Available,
        Self::Reserved,
        Self::Prepared,
        Self::Lent,
        Self::Returned,
        Self::Wiping,
        Self::Maintenance,
        Self::Lost,
        Self::Retired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Reserved => "reserved",
            Self::Prepared => "prepared",
            Self::Lent => "lent",
            Self::Returned => "returned",
            Self::Wiping => "wiping",
            Self::Maintenance => "maintenance",
            Self::Lost => "lost",
            Self::Retired => "retired",
        }
    }

    pub fn label_fr(self) -> &'static str {
        match self {
            Self::Available => "disponible",
            Self::Reserved => "réservé",
            Self::Prepared => "préparé",
            Self::Lent => "prêté",
            Self::Returned => "restitué",
            Self::Wiping => "en effacement",
            Self::Maintenance => "en maintenance",
            Self::Lost => "perdu",
            Self::Retired => "réformé",
        }
    }

    /// Held for a crisis: it must come back (or be written off) before the crisis closes.
    pub fn is_out(self) -> bool {
        matches!(self, Self::Reserved | Self::Prepared | Self::Lent)
    }

    /// The states a wipe may be recorded from: returned by the commune, or its wipe started.
    pub const WIPE_SOURCES: [ItemState; 2] = [Self::Returned, Self::Wiping];

    /// The states ops may move an item from, by hand outside a loan, to `to`: prepare a
    /// reserved item, start a wipe, send to or bring back from maintenance, retire. Empty when
    /// no such move leads to `to`.
    pub fn service_sources(to: ItemState) -> &'static [ItemState] {
        match to {
            Self::Prepared => &[Self::Reserved],
            Self::Wiping => &[Self::Returned],
            Self::Maintenance => &[Self::Available, Self::Returned],
            Self::Available => &[Self::Maintenance],
            Self::Retired => &[Self::Available, Self::Maintenance, Self::Lost],
            _ => &[],
        }
    }

    /// Ops may move an item in this state to `to` by hand.
    pub fn may_service_to(self, to: ItemState) -> bool {
        Self::service_sources(to).contains(&self)
    }

    /// A wipe may be recorded for an item in this state.
    pub fn may_record_wipe(self) -> bool {
        Self::WIPE_SOURCES.contains(&self)
    }
}

impl fmt::Display for ItemState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ItemState {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

/// An item state as stored in a history (`lent`), in French (« prêté »); an unknown code as it is.
pub fn state_label(code: &str) -> String {
    code.parse::<ItemState>().map_or_else(|_| code.to_owned(), |s| s.label_fr().to_owned())
}

/// Luhn check over a string of digits.
pub fn luhn_ok(digits: &str) -> bool {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if !i.is_multiple_of(2) {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A 15-digit IMEI with a valid check digit.
pub fn imei(field: &str, s: &str) -> Result<String, FieldError> {
    let v: String = s.chars().filter(|c| !c.is_whitespace() && *c != '-').collect();
    if v.len() != 15 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FieldError::new(field, "un IMEI compte 15 chiffres"));
    }
    if !luhn_ok(&v) {
        return Err(FieldError::new(field, "chiffre de contrôle de l'IMEI invalide"));
    }
    Ok(v)
}

/// An ICCID: 19 or 20 digits starting with 89 (telecom), with a valid Luhn check digit.
pub fn iccid(field: &str, s: &str) -> Result<String, FieldError> {
    let v: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !(19..=20).contains(&v.len()) || !v.bytes().all(|b| b.is_ascii_digit()) || !v.starts_with("89") {
        return Err(FieldError::new(field, "un ICCID compte 19 ou 20 chiffres et commence par 89"));
    }
    if !luhn_ok(&v) {
        return Err(FieldError::new(field, "chiffre de contrôle de l'ICCID invalide"));
    }
    Ok(v)
}

/// Most agents one list (`PUT`/`POST /api/v1/crises/{id}/agents`) may name.
pub const MAX_AGENTS_LIST: usize = 500;
/// Most CSV files one import may take.
pub const MAX_IMPORT_FILES: usize = 100;
/// Most items of one kind a request may want (laptops: [`MAX_LAPTOPS`]).
pub const MAX_PER_KIND: u32 = 100;

/// Longest serial number or asset tag.
pub const IDENTIFIER_MAX: usize = 64;

/// A serial number or asset tag: 1 to [`IDENTIFIER_MAX`] letters, digits and `-_./`.
pub fn identifier(field: &str, s: &str) -> Result<String, FieldError> {
    let v = s.trim();
    if v.is_empty() || v.len() > IDENTIFIER_MAX || !v.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) {
        return Err(FieldError::new(field, "1 à 64 caractères : lettres, chiffres, - _ . /"));
    }
    Ok(v.to_owned())
}

/// One piece of equipment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Item {
    pub asset_tag: String,
    pub serial: String,
    pub kind: ItemKind,
    pub model: String,
    pub imei: Option<String>,
    pub iccid: Option<String>,
    /// E.164.
    pub msisdn: Option<String>,
    pub apn: Option<String>,
    pub location: Option<String>,
}

/// Which column holds what: Repli's names, or a Snipe-IT export's.
fn column(header: &str) -> Option<&'static str> {
    Some(match header.trim().to_lowercase().as_str() {
        "asset_tag" | "asset tag" => "asset_tag",
        "serial" | "serial number" | "numéro de série" => "serial",
        "kind" | "category" | "catégorie" => "kind",
        "model" | "model name" | "modèle" => "model",
        "imei" => "imei",
        "iccid" => "iccid",
        "msisdn" | "phone number" | "numéro" => "msisdn",
        "apn" => "apn",
        "location" | "default location" | "emplacement" => "location",
        _ => return None,
    })
}

/// Parses an inventory file: every error at once, nothing returned on error. Lines are those
/// of the file; unknown columns are refused unless the file is a Snipe-IT export.
pub fn parse_items(source: &str, text: &str) -> Result<Vec<(u64, Item)>, ReferenceError> {
    let mut errors = Vec::new();
    if text.len() > MAX_REFERENCE_BYTES {
        return Err(ReferenceError {
            errors: vec![format!("{source}: fichier de plus de {MAX_REFERENCE_BYTES} octets")],
        });
    }
    if let Err(line) = crate::text::csv_quotes_closed(text) {
        return Err(ReferenceError { errors: vec![format!("{source}:{line}: guillemet ouvert jamais fermé")] });
    }
    let mut rdr = csv::ReaderBuilder::new().flexible(false).from_reader(text.as_bytes());
    let headers = match rdr.headers() {
        Ok(h) => h.clone(),
        Err(e) => return Err(ReferenceError { errors: vec![format!("{source}:1: {e}")] }),
    };
    let snipe_it = headers.iter().any(|h| h.trim().eq_ignore_ascii_case("asset tag"));
    let mut index: HashMap<&'static str, usize> = HashMap::new();
    for (i, h) in headers.iter().enumerate() {
        match column(h) {
            Some(c) => {
                index.insert(c, i);
            }
            None if snipe_it => {}
            None => errors.push(format!("{source}:1: colonne inconnue « {} »", h.trim())),
        }
    }
    for required in ["asset_tag", "serial", "kind", "model"] {
        if !index.contains_key(required) {
            errors.push(format!("{source}:1: colonne manquante « {required} »"));
        }
    }
    if !errors.is_empty() {
        return Err(ReferenceError { errors });
    }
    let mut seen_serial = HashSet::new();
    let mut seen_tag = HashSet::new();
    let mut out = Vec::new();
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, csv::Position::line);
                errors.push(format!("{source}:{line}: {e}"));
                continue;
            }
        };
        let line = rec.position().map_or(0, csv::Position::line);
        let get = |c: &str| index.get(c).and_then(|i| rec.get(*i)).map(str::trim).filter(|v| !v.is_empty());
        let mut row_errors: Vec<String> = Vec::new();
        let mut keep = |r: Result<String, FieldError>| match r {
            Ok(v) => Some(v),
            Err(e) => {
                row_errors.push(e.to_string());
                None
            }
        };
        let asset_tag = keep(identifier("asset_tag", get("asset_tag").unwrap_or("")));
        let serial = keep(identifier("serial", get("serial").unwrap_or("")));
        let model = keep(text::name("model", get("model").unwrap_or("")));
        let imei_v = get("imei").map(|v| keep(imei("imei", v)));
        let iccid_v = get("iccid").map(|v| keep(iccid("iccid", v)));
        let msisdn = get("msisdn").map(|v| keep(text::phone("msisdn", v)));
        let apn = get("apn").map(|v| keep(text::name("apn", v)));
        let location = get("location").map(|v| keep(text::name("location", v)));
        let kind = match get("kind").unwrap_or("").parse::<ItemKind>() {
            Ok(k) => Some(k),
            Err(e) => {
                row_errors.push(e.to_string());
                None
            }
        };
        if let Some(k) = kind {
            if matches!(k, ItemKind::Phone | ItemKind::Router) && imei_v.is_none() {
                row_errors.push(format!("un {} doit avoir son IMEI", k.label_fr()));
            }
            if k == ItemKind::Sim && iccid_v.is_none() {
                row_errors.push("une carte SIM doit avoir son ICCID".to_owned());
            }
        }
        if let Some(s) = &serial
            && !seen_serial.insert(s.clone())
        {
            row_errors.push(format!("numéro de série {s} en double"));
        }
        if let Some(t) = &asset_tag
            && !seen_tag.insert(t.clone())
        {
            row_errors.push(format!("numéro d'inventaire {t} en double"));
        }
        if !row_errors.is_empty() {
            errors.extend(row_errors.into_iter().map(|e| format!("{source}:{line}: {e}")));
            continue;
        }
        if let (Some(asset_tag), Some(serial), Some(kind), Some(model)) = (asset_tag, serial, kind, model) {
            out.push((
                line,
                Item {
                    asset_tag,
                    serial,
                    kind,
                    model,
                    imei: imei_v.flatten(),
                    iccid: iccid_v.flatten(),
                    msisdn: msisdn.flatten(),
                    apn: apn.flatten(),
                    location: location.flatten(),
                },
            ));
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(ReferenceError { errors }) }
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_unterminated_quote_is_refused_with_its_line() {
        let text = "asset_tag,serial,kind,model\nL-1,S-1,laptop,P\nL-2,\"S-2,laptop,P\nL-3,S-3,laptop,P\n";
        let e = parse_items("pool.csv", text).unwrap_err();
        assert_eq!(e.errors, ["pool.csv:3: guillemet ouvert jamais fermé"]);
    }
    use super::*;

    #[test]
    fn the_sql_list_of_wiped_kinds_is_the_rule() {
        let listed: Vec<ItemKind> =
            ItemKind::ALL.into_iter().filter(|k| ItemKind::WIPED_SQL.contains(&format!("'{}'", k.as_str()))).collect();
        let wiped: Vec<ItemKind> = ItemKind::ALL.into_iter().filter(|k| k.needs_wipe()).collect();
        assert_eq!(listed, wiped);
        assert_eq!(wiped, [ItemKind::Laptop, ItemKind::Phone], "the kinds that hold an agent's data");
    }

    #[test]
    fn ops_moves_start_from_the_states_the_pool_allows() {
        use ItemState::*;
        let from = |to: ItemState| ItemState::ALL.into_iter().filter(|s| s.may_service_to(to)).collect::<Vec<_>>();
        assert_eq!(from(Wiping), [Returned], "a wipe starts once the item is back");
        assert_eq!(from(Maintenance), [Available, Returned]);
        assert_eq!(from(Available), [Maintenance], "back to service from maintenance only");
        assert_eq!(from(Retired), [Available, Maintenance, Lost], "never an item out with a commune");
        assert_eq!(from(Prepared), [Reserved]);
        for to in [Reserved, Lent, Returned, Lost] {
            assert!(from(to).is_empty(), "{to} is reached by a loan, not by hand");
        }
        let wipeable: Vec<_> = ItemState::ALL.into_iter().filter(|s| s.may_record_wipe()).collect();
        assert_eq!(wipeable, [Returned, Wiping]);
    }

    #[test]
    fn check_digits() {
        assert!(imei("i", "490154203237518").is_ok());
        assert!(imei("i", "490154203237519").is_err());
        assert!(imei("i", "49015420323751").is_err());
        let valid = "89331503190000000012";
        assert!(luhn_ok(valid), "test vector must be valid");
        assert!(iccid("c", valid).is_ok());
        assert!(iccid("c", "89331503190000000013").is_err());
        assert!(iccid("c", "12331503190000000012").is_err());
    }

    #[test]
    fn reads_repli_and_snipe_it_files() {
        let repli = "asset_tag,serial,kind,model,imei,iccid,msisdn,apn,location\n\
                     LAP-1,FICTIF-L1,laptop,Latitude (fictif),,,,,Marignane\n\
                     PHN-1,FICTIF-P1,phone,Galaxy (fictif),490154203237518,,,,\n\
                     SIM-1,FICTIF-S1,sim,SIM 5G,,89331503190000000012,06 39 98 00 01,internet.pro,\n";
        let items = parse_items("pool.csv", repli).unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[2].1.msisdn.as_deref(), Some("+33639980001"));
        assert_eq!(items[0].0, 2);
        let snipe = "Asset Tag,Asset Name,Serial,Model,Category,Status,Location,IMEI\n\
                     RTR-1,Routeur A,FICTIF-R1,Nighthawk (fictif),Routeurs,Ready to Deploy,Aix,490154203237518\n";
        let items = parse_items("snipe.csv", snipe).unwrap();
        assert_eq!(items[0].1.kind, ItemKind::Router);
    }

    #[test]
    fn four_planted_errors_are_all_reported_with_their_lines() {
        let bad = "asset_tag,serial,kind,model,imei,iccid,msisdn,apn,location\n\
                   LAP-1,FICTIF-L1,laptop,Latitude,,,,,\n\
                   LAP-2,FICTIF-L1,laptop,Latitude,,,,,\n\
                   TAB-1,FICTIF-T1,tablet,iPad,,,,,\n\
                   PHN-1,FICTIF-P1,phone,Galaxy,490154203237519,,,,\n\
                   SIM-1,FICTIF-S1,sim,SIM,,89331503190000000013,,,\n";
        let e = parse_items("bad.csv", bad).unwrap_err();
        assert_eq!(e.errors.len(), 4, "{e}");
        assert!(e.errors[0].starts_with("bad.csv:3: numéro de série FICTIF-L1 en double"), "{e}");
        assert!(e.errors[1].starts_with("bad.csv:4: type inconnu"), "{e}");
        assert!(e.errors[2].starts_with("bad.csv:5:") && e.errors[2].contains("IMEI"), "{e}");
        assert!(e.errors[3].starts_with("bad.csv:6:") && e.errors[3].contains("ICCID"), "{e}");
        assert!(parse_items("x.csv", "serial,colour\n").is_err());
    }
}

#[cfg(test)]
mod pool_tests {
    use super::*;

    #[test]
    fn the_shipped_sample_pool_parses() {
        let items = parse_items("inventory/pool.csv", include_str!("../../../inventory/pool.csv")).unwrap();
        let count = |k| items.iter().filter(|(_, i)| i.kind == k).count();
        assert!(count(ItemKind::Laptop) >= 120 && count(ItemKind::Router) >= 12 && count(ItemKind::Phone) >= 60);
        assert!(
            count(ItemKind::Printer) >= 6 && count(ItemKind::Sim) >= count(ItemKind::Phone) + count(ItemKind::Router)
        );
        assert!(items.iter().all(|(_, i)| i.serial.starts_with("FICTIF-")), "sample serials are marked fictitious");
    }
}
