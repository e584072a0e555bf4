//! The auditors' journal: the chain's verification, the entries filtered and paged, exports.

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use repli_app::{AppError, crises};
use repli_proto::api::AuditQuery;
use serde::Serialize;
use std::collections::BTreeMap;

use crate::AppState;
use crate::http::auth::Authed;
use crate::web::view::{Layout, page};
use crate::web::{SessionCsrf, api_error_page, error_page};

const PAGE: u32 = 50;

/// The journal's filters, each checked for its shape before it is used, shown again in its
/// field or put in a link: a link can carry any words in its query, and an official page must
/// not show them. A filter that fails its check is named in a fixed message, never echoed.
/// The actor (free text: a person's name) is shown again only when it matched entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
struct Filters {
    crise: String,
    commune: String,
    acteur: String,
    action: String,
    du: String,
    au: String,
}

impl Filters {
    /// The filters as query pairs (the empty ones left out), for the export and paging links.
    fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("crise", self.crise.as_str()),
            ("commune", &self.commune),
            ("acteur", &self.acteur),
            ("action", &self.action),
            ("du", &self.du),
            ("au", &self.au),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect()
    }
}

/// The journal's French filter fields, checked, and the audit query they make (the days in
/// `tz`, the configured calendar's); the store's own limits are checked again by
/// `crises::audit_entries`.
fn audit_filter(q: &BTreeMap<String, String>, tz: &jiff::tz::TimeZone) -> Result<(Filters, AuditQuery), String> {
    let get = |k: &str| q.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let day = |k: &str, end: bool| -> Result<Option<(jiff::civil::Date, jiff::Timestamp)>, String> {
        let field = if end { "Au" } else { "Du" };
        let invalid = || format!("Date « {field} » invalide : attendu aaaa-mm-jj.");
        match get(k) {
            None => Ok(None),
            Some(d) => {
                let date: jiff::civil::Date = d.parse().map_err(|_| invalid())?;
                let bound = if end { date.tomorrow().map_err(|_| invalid())? } else { date };
                let z = bound.to_zoned(tz.clone()).map_err(|_| invalid())?;
                Ok(Some((date, z.timestamp())))
            }
        }
    };
    let crisis = match get("crise") {
        None => None,
        Some(c) => Some(
            repli_core::CrisisId::parse(&c)
                .map_err(|_| "Numéro de crise invalide : attendu par exemple 13005-2026-001.".to_string())?
                .to_string(),
        ),
    };
    let commune = match get("commune") {
        None => None,
        Some(c) => Some(
            repli_core::InseeCode::parse(&c)
                .map_err(|_| "Commune invalide : attendu son code INSEE à 5 chiffres.".to_string())?
                .as_str()
                .to_owned(),
        ),
    };
    let action = match get("action") {
        None => None,
        Some(a) => Some(
            a.parse::<repli_core::audit::ActionFilter>()
                .map_err(|_| {
                    "Action inconnue du journal : donnez une action (crisis.activate) ou un préfixe terminé par un \
                     point (crisis.)."
                        .to_string()
                })?
                .to_string(),
        ),
    };
    let actor = get("acteur");
    if actor.as_ref().is_some_and(|a| a.chars().count() > 200 || a.chars().any(char::is_control)) {
        return Err("Acteur invalide : 200 caractères au plus.".into());
    }
    let from = day("du", false)?;
    let to = day("au", true)?;
    let after = match get("apres") {
        None => None,
        Some(v) => Some(v.parse::<i64>().map_err(|_| "Position de page invalide.".to_string())?),
    };
    let shown = Filters {
        crise: crisis.clone().unwrap_or_default(),
        commune: commune.clone().unwrap_or_default(),
        acteur: actor.clone().unwrap_or_default(),
        action: action.clone().unwrap_or_default(),
        du: from.map(|(d, _)| d.to_string()).unwrap_or_default(),
        au: to.map(|(d, _)| d.to_string()).unwrap_or_default(),
    };
    let query = AuditQuery {
        crisis,
        commune,
        actor,
        action,
        from: from.map(|(_, t)| t),
        to: to.map(|(_, t)| t),
        after,
        limit: Some(PAGE),
    };
    Ok((shown, query))
}

/// The chain's verification, as the page states it.
#[derive(Debug, Serialize)]
struct Verify {
    ok: bool,
    entries: u64,
    /// The last signed checkpoint's number.
    checkpoint: Option<i64>,
    /// The checkpoints' public key.
    key: Option<String>,
    /// The fingerprints of the keys the verification trusted.
    trusted: Vec<String>,
    /// The signed head (`seq:hash` to keep).
    head: Option<repli_core::audit::Checkpoint>,
    /// Why the chain is not verified.
    error: Option<String>,
}

/// One audit entry of the table.
#[derive(Debug, Serialize)]
struct Entry {
    seq: i64,
    /// As recorded (UTC).
    at: String,
    who: String,
    role: String,
    crisis: Option<String>,
    action: String,
    target: String,
    details: String,
}

#[derive(Debug, Serialize)]
struct JournalPage {
    verify: Verify,
    /// Why the filters were refused (the page then lists the first entries).
    filter_error: Option<String>,
    q: Filters,
    /// The export links, when there is something to export.
    export_csv: Option<String>,
    export_jsonl: Option<String>,
    entries: Vec<Entry>,
    /// The next page's link.
    next: Option<String>,
}

pub async fn journal(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let verify = match crises::audit_verify(&st).await {
        Ok(v) => v,
        Err(e) => return api_error_page(&st, &e),
    };
    let verify = Verify {
        ok: verify.verified,
        entries: verify.entries,
        checkpoint: verify.last_checkpoint,
        key: verify.public_key,
        trusted: verify.trusted_keys,
        head: verify.head,
        error: verify.error,
    };
    let mut filter_error = None;
    let (mut shown, filter) = match audit_filter(&q, &st.time_zone().clone()) {
        Ok(f) => f,
        Err(m) => {
            filter_error = Some(m);
            (Filters::default(), AuditQuery { limit: Some(PAGE), ..Default::default() })
        }
    };
    let (entries, next) = match crises::audit_entries(&st, filter).await {
        Ok(p) => (p.entries, p.next_after),
        Err(AppError::Problem { code: repli_proto::ProblemCode::InvalidQuery, detail }) => {
            filter_error = Some(detail);
            shown = Filters::default();
            (Vec::new(), None)
        }
        Err(e) => return api_error_page(&st, &e),
    };
    if entries.is_empty() && !shown.acteur.is_empty() {
        // A name that matched nothing is not shown again (it could be anyone's words).
        shown.acteur.clear();
        filter_error.get_or_insert_with(|| "Aucune entrée ne correspond à cet acteur.".to_owned());
    }
    let qs = |extra: Option<(&'static str, String)>, format: Option<&'static str>| {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        if let Some(f) = format {
            ser.append_pair("format", f);
        }
        ser.extend_pairs(shown.pairs());
        if let Some((k, v)) = extra {
            ser.append_pair(k, &v);
        }
        ser.finish()
    };
    let some = !entries.is_empty();
    let body = JournalPage {
        verify,
        filter_error,
        export_csv: some.then(|| format!("/journal/export?{}", qs(None, Some("csv")))),
        export_jsonl: some.then(|| format!("/journal/export?{}", qs(None, Some("jsonl")))),
        next: next.map(|n| format!("/journal?{}", qs(Some(("apres", n.to_string())), None))),
        entries: entries
            .into_iter()
            .map(|e| Entry {
                seq: e.seq,
                at: e.at,
                who: e.actor_name,
                role: e.actor_role,
                crisis: e.crisis,
                action: e.action,
                target: e.target,
                details: e.details,
            })
            .collect(),
        q: shown,
    };
    let layout = Layout::signed_in(&a, &csrf, "Journal d'audit");
    page(&st, StatusCode::OK, "journal", &layout, &body)
}

pub async fn journal_export(
    State(st): State<AppState>,
    _: Authed,
    Query(mut q): Query<BTreeMap<String, String>>,
) -> Response {
    let format = q.remove("format").unwrap_or_else(|| "csv".into());
    let filter = match audit_filter(&q, &st.time_zone().clone()) {
        Ok((_, f)) => f,
        Err(m) => return error_page(&st, StatusCode::BAD_REQUEST, "Filtre invalide", &m),
    };
    let all = match crises::audit_export(&st, filter).await {
        Ok(all) => all,
        Err(e) => return api_error_page(&st, &e),
    };
    let (body, ct, ext) = match format.as_str() {
        "jsonl" => (
            all.iter().filter_map(|e| serde_json::to_string(e).ok()).map(|l| l + "\n").collect::<String>().into_bytes(),
            "application/x-ndjson",
            "jsonl",
        ),
        _ => {
            let mut out = Vec::new();
            if let Err(e) = repli_core::audit::write_csv(&mut out, &all) {
                return api_error_page(&st, &AppError::Internal(e.to_string()));
            }
            (out, "text/csv; charset=utf-8", "csv")
        }
    };
    let disposition = format!("attachment; filename=\"journal-audit.{ext}\"");
    (StatusCode::OK, [(header::CONTENT_TYPE, ct.to_string()), (header::CONTENT_DISPOSITION, disposition)], body)
        .into_response()
}

/// This area's routes, each with its access rule and its documentation (`http::routes`
/// gathers every area's into the one table).
pub(crate) fn routes() -> Vec<crate::http::spec::Route> {
    use crate::http::spec::Access::Page;
    use crate::http::spec::Answer;
    use crate::http::spec::Doc;
    use axum::http::Method;
    use axum::routing;
    use repli_core::Permission as P;
    vec![
        (Method::GET, "/journal", Page(P::ReadAudit), routing::get(journal), Doc::page("The audit log")),
        (
            Method::GET,
            "/journal/export",
            Page(P::ReadAudit),
            routing::get(journal_export),
            Doc::answering("The audit log as CSV or a bundle (a download)", Answer::Html),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paris() -> jiff::tz::TimeZone {
        repli_core::BusinessCalendar::from_spec(&repli_core::CalendarSpec::default()).unwrap().time_zone().clone()
    }

    #[test]
    fn audit_filters_are_checked() {
        let mut q = BTreeMap::new();
        q.insert("du".to_string(), "2026-11-23".to_string());
        q.insert("au".to_string(), "2026-11-23".to_string());
        let (shown, f) = audit_filter(&q, &paris()).unwrap();
        assert_eq!(shown.du, "2026-11-23");
        assert_eq!(f.to.unwrap().duration_since(f.from.unwrap()), jiff::SignedDuration::from_hours(24));
        q.insert("du".to_string(), "23/11/2026".to_string());
        assert!(audit_filter(&q, &paris()).is_err());
        let mut q = BTreeMap::new();
        q.insert("apres".to_string(), "douze".to_string());
        assert!(audit_filter(&q, &paris()).is_err(), "a position that is not a number is refused, not read as 0");
    }

    #[test]
    fn a_filter_that_fails_its_check_is_named_never_echoed() {
        let words = "Appelez le 06 00 00 00 00";
        for k in ["crise", "commune", "action", "du", "au", "apres"] {
            let q = BTreeMap::from([(k.to_string(), words.to_string())]);
            let e = audit_filter(&q, &paris()).unwrap_err();
            assert!(!e.contains("Appelez"), "{k}: {e}");
        }
        let q = BTreeMap::from([("crise".to_string(), " 13005-2026-001 ".to_string())]);
        let (shown, f) = audit_filter(&q, &paris()).unwrap();
        assert_eq!((shown.crise.as_str(), f.crisis.as_deref()), ("13005-2026-001", Some("13005-2026-001")));
    }
}
