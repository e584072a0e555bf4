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
use crate::web::{SessionCsrf, api_error_page, complete, error_page};

/// The filters the page shows in its fields.
const FILTERS: [&str; 6] = ["crise", "commune", "acteur", "action", "du", "au"];

const PAGE: u32 = 50;

/// The journal's filters; dates are days in `tz` (the configured calendar's).
/// The journal's French filter fields as the audit query (the days, from the calendar's time
/// zone); the filters' own rules are checked by `crises::audit_entries`.
fn audit_filter(q: &BTreeMap<String, String>, tz: &jiff::tz::TimeZone) -> Result<AuditQuery, String> {
    let get = |k: &str| q.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let day = |k: &str, end: bool| -> Result<Option<jiff::Timestamp>, String> {
        match get(k) {
            None => Ok(None),
            Some(d) => {
                let date: jiff::civil::Date = d.parse().map_err(|_| format!("Date « {d} » invalide (aaaa-mm-jj)."))?;
                let date = if end { date.tomorrow().map_err(|e| e.to_string())? } else { date };
                let z = date.to_zoned(tz.clone()).map_err(|e| e.to_string())?;
                Ok(Some(z.timestamp()))
            }
        }
    };
    let after = match get("apres") {
        None => None,
        Some(v) => Some(v.parse::<i64>().map_err(|_| format!("Position « {v} » invalide."))?),
    };
    Ok(AuditQuery {
        crisis: get("crise"),
        commune: get("commune"),
        actor: get("acteur"),
        action: get("action"),
        from: day("du", false)?,
        to: day("au", true)?,
        after,
        limit: Some(PAGE),
    })
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

/// The filters as typed, shown again in their fields.
#[derive(Debug, Serialize)]
struct Filters {
    crise: String,
    commune: String,
    acteur: String,
    action: String,
    du: String,
    au: String,
}

impl Filters {
    fn typed(q: &BTreeMap<String, String>) -> Self {
        // Every filter present, empty when not given.
        let q = complete(q, &FILTERS);
        let get = |k: &str| q.get(k).cloned().unwrap_or_default();
        Filters {
            crise: get("crise"),
            commune: get("commune"),
            acteur: get("acteur"),
            action: get("action"),
            du: get("du"),
            au: get("au"),
        }
    }
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
    export_csv: String,
    export_jsonl: String,
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
    let filter = match audit_filter(&q, &st.time_zone().clone()) {
        Ok(f) => f,
        Err(m) => {
            filter_error = Some(m);
            AuditQuery { limit: Some(PAGE), ..Default::default() }
        }
    };
    let (entries, next) = match crises::audit_entries(&st, filter).await {
        Ok(p) => (p.entries, p.next_after),
        Err(AppError::Problem { code: repli_proto::ProblemCode::InvalidQuery, detail }) => {
            filter_error = Some(detail);
            (Vec::new(), None)
        }
        Err(e) => return api_error_page(&st, &e),
    };
    let mut next_q = q.clone();
    if let Some(n) = next {
        next_q.insert("apres".into(), n.to_string());
    }
    let mut export_q = q.clone();
    export_q.remove("apres");
    let qs =
        |m: &BTreeMap<String, String>| form_urlencoded::Serializer::new(String::new()).extend_pairs(m.iter()).finish();
    let body = JournalPage {
        verify,
        filter_error,
        q: Filters::typed(&q),
        export_csv: format!("/journal/export?format=csv&{}", qs(&export_q)),
        export_jsonl: format!("/journal/export?format=jsonl&{}", qs(&export_q)),
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
        next: next.map(|_| format!("/journal?{}", qs(&next_q))),
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
        Ok(f) => f,
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
        let f = audit_filter(&q, &paris()).unwrap();
        assert_eq!(f.to.unwrap().duration_since(f.from.unwrap()), jiff::SignedDuration::from_hours(24));
        q.insert("du".to_string(), "23/11/2026".to_string());
        assert!(audit_filter(&q, &paris()).is_err());
        let mut q = BTreeMap::new();
        q.insert("apres".to_string(), "douze".to_string());
        assert!(audit_filter(&q, &paris()).is_err(), "a position that is not a number is refused, not read as 0");
    }
}
