//! The procedures pack: French documents rendered per crisis from handlebars templates
//! (`playbooks/templates/`, overridable from a directory), in strict mode with HTML escaping:
//! HTML with an A4 print stylesheet (one self-contained file per document), Markdown for the
//! text documents, and a zip of the pack.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use handlebars::Handlebars;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use repli_core::fr;
use repli_proto::api::{CrisisView, LoanView, LogEntryView};
use serde::Serialize;

/// The built-in templates, by name.
const TEMPLATES: &[(&str, &str)] = &[
    ("page", include_str!("../../../playbooks/templates/page.hbs")),
    ("dossier", include_str!("../../../playbooks/templates/dossier.hbs")),
    ("modes-operatoires", include_str!("../../../playbooks/templates/modes-operatoires.hbs")),
    ("regles-securite", include_str!("../../../playbooks/templates/regles-securite.hbs")),
    ("fiche-identifiants", include_str!("../../../playbooks/templates/fiche-identifiants.hbs")),
    ("bon-de-pret", include_str!("../../../playbooks/templates/bon-de-pret.hbs")),
    ("pv-restitution", include_str!("../../../playbooks/templates/pv-restitution.hbs")),
    ("rapport-cloture", include_str!("../../../playbooks/templates/rapport-cloture.hbs")),
    ("dossier.md", include_str!("../../../playbooks/templates/dossier.md.hbs")),
    ("modes-operatoires.md", include_str!("../../../playbooks/templates/modes-operatoires.md.hbs")),
    ("regles-securite.md", include_str!("../../../playbooks/templates/regles-securite.md.hbs")),
];

/// The file of the credential sheets: served to ops only.
pub const CREDENTIAL_SHEETS: &str = "04-fiches-identifiants.html";

/// The documents of a pack: template name → output file.
pub const DOCUMENTS: &[(&str, &str)] = &[
    ("dossier", "01-dossier-de-mise-a-disposition.html"),
    ("modes-operatoires", "02-modes-operatoires.html"),
    ("regles-securite", "03-regles-de-securite.html"),
    ("fiche-identifiants", "04-fiches-identifiants.html"),
    ("bon-de-pret", "05-bon-de-pret.html"),
    ("pv-restitution", "06-proces-verbal-de-restitution.html"),
    ("rapport-cloture", "07-rapport-de-cloture.html"),
    ("dossier.md", "01-dossier-de-mise-a-disposition.md"),
    ("modes-operatoires.md", "02-modes-operatoires.md"),
    ("regles-securite.md", "03-regles-de-securite.md"),
];

#[derive(Debug, thiserror::Error)]
pub enum DocsError {
    #[error("template {name}: {message}")]
    Template { name: String, message: String },
    #[error("rendering {name}: {message}")]
    Render { name: String, message: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("zip: {0}")]
    Zip(String),
}

/// The métropole's out-of-band contacts printed in the documents.
#[derive(Debug, Clone, Serialize)]
pub struct Metropole {
    pub astreinte_phone: String,
    pub astreinte_email: String,
    pub csirt_phone: String,
}

/// One agent's account, with the initial password (only ever printed in the credential sheets).
#[derive(Clone, Serialize)]
pub struct Account {
    pub name: String,
    pub service: String,
    pub login: String,
    pub password: String,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account").field("login", &self.login).field("password", &"<redacted>").finish()
    }
}

/// The Microsoft 365 workspace, once provisioned.
#[derive(Debug, Clone, Serialize)]
pub struct M365 {
    pub domain: String,
    pub team: String,
    pub channels: Vec<String>,
    /// The collaborative space's address (empty when unknown).
    pub team_url: String,
    pub meeting_url: String,
}

/// A link as an inline SVG QR code (black modules on white, no text inside: the SVG carries
/// no markup from the link). None for an empty or oversized link.
pub fn qr_svg(link: &str) -> Option<String> {
    qr_svg_named(link, "Code QR du lien")
}

/// Any text as an inline SVG QR code named `label` for screen readers (an equipment label's
/// asset tag: what a scanner then types). None for an empty or oversized text.
pub fn qr_svg_named(text: &str, label: &str) -> Option<String> {
    let link = text;
    if link.is_empty() {
        return None;
    }
    let code = qrcode::QrCode::with_error_correction_level(link.as_bytes(), qrcode::EcLevel::M).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(160, 160)
        .quiet_zone(true)
        .dark_color(qrcode::render::svg::Color("#000000"))
        .light_color(qrcode::render::svg::Color("#ffffff"))
        .build();
    // Inline in HTML: no XML declaration; named for screen readers (the link is printed beside).
    let start = svg.find("<svg")?;
    let label: String = label.chars().filter(|c| c.is_alphanumeric() || " '-".contains(*c)).collect();
    Some(svg[start..].replacen("<svg ", &format!("<svg role=\"img\" aria-label=\"{label}\" "), 1))
}

/// What a pack is made from: the crisis as the API shows it, and what provisioning produced.
#[derive(Debug, Clone)]
pub struct PackInput<'a> {
    pub crisis: &'a CrisisView,
    /// The data hand-back, once archived or waived (the PV states it).
    pub data: Option<DataHandback>,
    /// What happened, oldest first, for the closure report.
    pub chronology: &'a [Moment],
    pub convention: Option<String>,
    pub loans: &'a [LoanView],
    /// serial → wipe certificate reference.
    pub wipes: &'a BTreeMap<String, String>,
    pub log: &'a [LogEntryView],
    pub accounts: &'a [Account],
    pub accounts_disabled: usize,
    pub m365: Option<M365>,
    pub metropole: &'a Metropole,
    pub simulation: bool,
    pub now: Timestamp,
    /// The time zone every date is written in: the daemon's configured SLA calendar's.
    pub time_zone: TimeZone,
}

impl<'a> PackInput<'a> {
    /// A pack with nothing provisioned yet: no loan, log entry, account or Microsoft 365
    /// workspace. Fill the rest with struct-update syntax.
    pub fn minimal(
        crisis: &'a CrisisView,
        metropole: &'a Metropole,
        wipes: &'a BTreeMap<String, String>,
        now: Timestamp,
    ) -> Self {
        Self {
            crisis,
            data: None,
            chronology: &[],
            convention: None,
            loans: &[],
            wipes,
            log: &[],
            accounts: &[],
            accounts_disabled: 0,
            m365: None,
            metropole,
            simulation: false,
            now,
            time_zone: default_time_zone(),
        }
    }
}

/// What became of the commune's mail and files, as the PV states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataHandback {
    /// The archive is complete and verified: its manifest's SHA-256 is in the audit log.
    /// `channels`: Team channels whose conversation the archive holds (0: the manual step).
    Archived { items: usize, exported: usize, bytes: u64, manifest_sha256: String, channels: usize },
    /// Ops waived the export (the step skipped), with their reason.
    Waived { reason: String },
}

/// The default calendar's time zone (Europe/Paris); replid passes its configured one.
fn default_time_zone() -> TimeZone {
    repli_core::BusinessCalendar::from_spec(&repli_core::CalendarSpec::default())
        .map(|c| c.time_zone().clone())
        .unwrap_or(TimeZone::UTC)
}

fn condition_fr(c: Option<&str>) -> &'static str {
    match c {
        Some("ok") => "bon état",
        Some("damaged") => "endommagé",
        Some("missing") => "manquant",
        _ => "non rendu",
    }
}

/// One line of the closure report's chronology, already written in French
/// (« 25 comptes créés », « Kit livré (par Cellule d'astreinte) »).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moment {
    pub at: Timestamp,
    pub text: String,
}

/// The chronology by day: « mardi 1er décembre 2026 », then « 10 h 02 — … » lines.
fn days(moments: &[Moment], tz: &TimeZone) -> Vec<serde_json::Value> {
    let mut out: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
    for m in moments {
        let day = fr::day(m.at, tz);
        let line = serde_json::json!({ "time": fr::time(m.at, tz), "text": m.text });
        match out.last_mut() {
            Some((d, lines)) if *d == day => lines.push(line),
            _ => out.push((day, vec![line])),
        }
    }
    out.into_iter().map(|(day, lines)| serde_json::json!({ "day": day, "lines": lines })).collect()
}

/// The template data, everything already formatted in French.
pub fn context(p: &PackInput<'_>) -> serde_json::Value {
    let when = |t: Option<Timestamp>| t.map_or_else(|| "—".to_owned(), |t| fr::datetime(t, &p.time_zone));
    let c = p.crisis;
    let loans: Vec<serde_json::Value> = p
        .loans
        .iter()
        .map(|l| {
            serde_json::json!({
                "asset_tag": l.asset_tag,
                "serial": l.serial,
                "kind": l.kind.label_fr(),
                "model": l.model,
                "imei": l.imei,
                "iccid": l.iccid,
                "msisdn": l.msisdn.as_deref().map(fr::phone),
                "agent": l.agent.as_ref().map_or_else(|| "la commune".to_owned(), |a| format!("{} ({})", a.name, a.service)),
                "due_back": when(Some(l.due_back)),
                "returned": l.returned_at.is_some(),
                "returned_at": when(l.returned_at),
                // A written-off item was never returned: its date and reason, never « rendu le ».
                "written_off": l.written_off_at.map(|t| fr::datetime(t, &p.time_zone)),
                "condition": condition_fr(l.condition.as_deref()),
                "note": l.write_off_reason,
                "sim": l.sim,
                "wipe": p.wipes.get(&l.serial).cloned().unwrap_or_else(|| "—".to_owned()),
            })
        })
        .collect();
    let discrepancies: Vec<String> = p
        .loans
        .iter()
        .filter(|l| l.condition.as_deref() != Some("ok"))
        .map(|l| match (l.written_off_at, &l.write_off_reason) {
            (Some(t), reason) => format!(
                "{} ({}) : passé en perte le {} — {}",
                l.asset_tag,
                l.kind.label_fr(),
                fr::datetime(t, &p.time_zone),
                reason.as_deref().unwrap_or("sans motif")
            ),
            (None, _) => format!("{} ({}) : {}", l.asset_tag, l.kind.label_fr(), condition_fr(l.condition.as_deref())),
        })
        .chain(p.loans.iter().filter_map(|l| {
            l.sim_not_returned
                .as_ref()
                .map(|sim| format!("{} ({}) : rendu sans sa carte SIM {sim}", l.asset_tag, l.kind.label_fr()))
        }))
        .collect();
    let routers: Vec<serde_json::Value> = p
        .loans
        .iter()
        .filter(|l| l.kind == repli_core::ItemKind::Router)
        .map(|l| serde_json::json!({ "asset_tag": l.asset_tag, "serial": l.serial, "apn": "internet.pro" }))
        .collect();
    serde_json::json!({
        "simulation": p.simulation,
        // An exercise's documents carry its banner and a watermark on every page.
        "exercise": c.exercise.as_ref().map(repli_core::ExerciseTag::banner),
        "generated_at": fr::datetime(p.now, &p.time_zone),
        "metropole": p.metropole,
        "crisis": {
            "id": c.id.as_str(),
            "insee": c.commune.as_str(),
            "commune_name": c.commune_name,
            "convention": p.convention,
            "requested_at": when(Some(c.requested_at)),
            "requested_by": c.requested_by,
            "contact_name": c.contact.name,
            "contact_phone": fr::phone(&c.contact.phone),
            "delivery_address": c.delivery_address.clone().unwrap_or_else(|| "à convenir".to_owned()),
            "due_at": when(Some(c.sla.due_at)),
            "business_hours": c.sla.business_hours,
            "state": c.state_label,
            "sla": c.sla.status_label,
            "ready_at": when(c.timeline.ready_at),
            "closed_at": when(c.timeline.closed_at),
        },
        "needs": c.needs.iter().map(|n| serde_json::json!({ "label": n.label, "wanted": n.wanted, "allocated": n.allocated, "shortage": n.shortage })).collect::<Vec<_>>(),
        "legal": c.legal.iter().map(|l| serde_json::json!({ "label": l.label, "deadline": when(Some(l.deadline)), "status": l.status.label_fr(jiff::SignedDuration::from_secs(l.remaining_seconds)) })).collect::<Vec<_>>(),
        "m365": p.m365,
        // QR codes of the kit's links, for paper (the link is printed beside each).
        "qr": p.m365.as_ref().map(|m| serde_json::json!({
            "meeting": qr_svg(&m.meeting_url),
            "team": qr_svg(&m.team_url),
        })),
        "routers": routers,
        "accounts": p.accounts,
        "loans": loans,
        "discrepancies": discrepancies,
        "summary": {
            "items_lent": p.loans.len(),
            "items_returned": p.loans.iter().filter(|l| matches!(l.condition.as_deref(), Some("ok" | "damaged"))).count(),
            "items_written_off": p.loans.iter().filter(|l| l.condition.as_deref() == Some("missing")).count(),
            "accounts_created": p.accounts.len(),
            "accounts_disabled": p.accounts_disabled,
        },
        "data": match &p.data {
            Some(DataHandback::Archived { items, exported, bytes, manifest_sha256, channels }) => serde_json::json!({
                "archived": true,
                "channels": channels,
                "items": items,
                "exported": exported,
                "size": format!("{:.1} Mo", *bytes as f64 / 1_000_000.0).replace('.', ","),
                "manifest_sha256": manifest_sha256,
            }),
            Some(DataHandback::Waived { reason }) => serde_json::json!({ "waived": reason }),
            None => serde_json::Value::Null,
        },
        "chronology": days(p.chronology, &p.time_zone),
        "main_courante": p.log.iter().map(|e| serde_json::json!({ "at": when(Some(e.at)), "kind": e.type_label, "author": e.author, "text": e.text })).collect::<Vec<_>>(),
    })
}

/// Escapes text placed in Markdown: no raw HTML, no markup from people's input.
pub fn markdown_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' => {
                o.push('\\');
                o.push(ch);
            }
            c if c.is_control() && c != '\n' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// The templates, ready to render: HTML ones escape for HTML, Markdown ones for Markdown.
#[derive(Debug)]
pub struct Documents {
    html: Handlebars<'static>,
    markdown: Handlebars<'static>,
}

impl Documents {
    /// The built-in templates, each replaced by `DIR/NAME.hbs` when `override_dir` has it.
    pub fn new(override_dir: Option<&Path>) -> Result<Self, DocsError> {
        handlebars::handlebars_helper!(de: |name: String| repli_core::fr::de(&name));
        let mut html = Handlebars::new();
        html.set_strict_mode(true);
        html.register_helper("de", Box::new(de));
        let mut markdown = Handlebars::new();
        markdown.set_strict_mode(true);
        markdown.register_helper("de", Box::new(de));
        markdown.register_escape_fn(markdown_escape);
        for (name, text) in TEMPLATES {
            let hb = if name.ends_with(".md") { &mut markdown } else { &mut html };
            let custom = override_dir.map(|d| d.join(format!("{name}.hbs"))).filter(|p| p.is_file());
            let source = match &custom {
                Some(p) => std::fs::read_to_string(p)
                    .map_err(|source| DocsError::Io { path: p.display().to_string(), source })?,
                None => (*text).to_owned(),
            };
            hb.register_template_string(name, source).map_err(|e| DocsError::Template {
                name: custom.map_or_else(|| (*name).to_owned(), |p| p.display().to_string()),
                message: e.to_string(),
            })?;
        }
        Ok(Self { html, markdown })
    }

    /// Every document of the pack: (file name, content).
    pub fn render(&self, p: &PackInput<'_>) -> Result<Vec<(String, String)>, DocsError> {
        let data = context(p);
        DOCUMENTS
            .iter()
            .map(|(tpl, file)| {
                let hb = if tpl.ends_with(".md") { &self.markdown } else { &self.html };
                hb.render(tpl, &data)
                    .map(|s| ((*file).to_owned(), s))
                    .map_err(|e| DocsError::Render { name: (*tpl).to_owned(), message: e.to_string() })
            })
            .collect()
    }

    /// A zip of rendered documents, in memory.
    pub fn zip_bytes(docs: &[(String, String)]) -> Result<Vec<u8>, DocsError> {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, content) in docs {
            zip.start_file(name.as_str(), opts).map_err(|e| DocsError::Zip(e.to_string()))?;
            zip.write_all(content.as_bytes()).map_err(|e| DocsError::Zip(e.to_string()))?;
        }
        Ok(zip.finish().map_err(|e| DocsError::Zip(e.to_string()))?.into_inner())
    }

    /// Writes the pack into `dir` (created) and a zip of it beside the files; returns the zip.
    pub fn write_pack(&self, p: &PackInput<'_>, dir: &Path) -> Result<PathBuf, DocsError> {
        fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DocsError + '_ {
            move |source| DocsError::Io { path: path.display().to_string(), source }
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let docs = self.render(p)?;
        for (name, content) in &docs {
            let path = dir.join(name);
            std::fs::write(&path, content).map_err(io(&path))?;
        }
        let zip_path = dir.join(format!("pack-{}.zip", p.crisis.id));
        std::fs::write(&zip_path, Self::zip_bytes(&docs)?).map_err(io(&zip_path))?;
        Ok(zip_path)
    }
}

pub mod sample;

/// Checks the templates of a folder (each `NAME.hbs` replaces the built-in of that name), every
/// problem at once as `file:line:col: message`: unknown template names, syntax errors, and —
/// rendering each document against a sample crisis in strict mode — unknown variables.
pub fn check_templates(dir: &Path) -> Vec<String> {
    let mut errors = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return vec![format!("{}: {e}", dir.display())],
    };
    let mut files: Vec<PathBuf> =
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.to_string_lossy().ends_with(".hbs")).collect();
    files.sort();
    let known: Vec<&str> = TEMPLATES.iter().map(|(n, _)| *n).collect();
    for f in &files {
        let file_name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let name = file_name.trim_end_matches(".hbs");
        if !known.contains(&name) {
            errors.push(format!("{}:1:1: unknown template « {name} » (known: {})", f.display(), known.join(", ")));
            continue;
        }
        match std::fs::read_to_string(f) {
            Err(e) => errors.push(format!("{}: {e}", f.display())),
            Ok(text) => {
                if let Err(e) = handlebars::Template::compile(&text) {
                    let (line, col) = e.pos().unwrap_or((1, 1));
                    errors.push(format!("{}:{line}:{col}: {}", f.display(), e.reason()));
                }
            }
        }
    }
    if !errors.is_empty() {
        return errors;
    }
    let docs = match Documents::new(Some(dir)) {
        Ok(d) => d,
        Err(e) => return vec![e.to_string()],
    };
    let (Some(crisis), loans, log, metropole) = (sample::crisis(), sample::loans(), sample::log(), sample::metropole())
    else {
        return vec!["internal error: the sample crisis does not build".into()];
    };
    let wipes = BTreeMap::new();
    let input = PackInput {
        loans: &loans,
        log: &log,
        simulation: true,
        ..PackInput::minimal(&crisis, &metropole, &wipes, sample::t("2026-12-11T16:00:00Z"))
    };
    let data = context(&input);
    for (tpl, _) in DOCUMENTS {
        let hb = if tpl.ends_with(".md") { &docs.markdown } else { &docs.html };
        if let Err(e) = hb.render(tpl, &data) {
            let name = e.template_name.clone().unwrap_or_else(|| (*tpl).to_owned());
            let path = dir.join(format!("{name}.hbs"));
            let shown = if path.is_file() { path.display().to_string() } else { format!("built-in {name}.hbs") };
            errors.push(format!("{shown}:{}:{}: {}", e.line_no.unwrap_or(1), e.column_no.unwrap_or(1), e.reason()));
        }
    }
    errors
}

#[cfg(test)]
mod tests;
