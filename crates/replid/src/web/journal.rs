//! The auditors' journal: the chain's verification, the entries filtered and paged, exports.

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use repli_app::{AppError, crises};
use repli_proto::api::AuditQuery;
use serde_json::{Value, json};
use std::collections::BTreeMap;

use crate::AppState;
use crate::http::auth::Authed;
use crate::web::{SessionCsrf, api_error_page, base, complete, error_page, render};

const FILTERS: [&str; 7] = ["crise", "commune", "acteur", "action", "du", "au", "apres"];

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

pub async fn journal(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let mut data = base(&a, &csrf, "Journal d'audit");
    let verify = match crises::audit_verify(&st).await {
        Ok(v) => v,
        Err(e) => return api_error_page(&st, &e),
    };
    data.insert(
        "verify".into(),
        if verify.verified {
            json!({ "ok": true, "entries": verify.entries, "checkpoint": verify.last_checkpoint, "key": verify.public_key })
        } else {
            json!({ "ok": false, "error": verify.error })
        },
    );
    let filter = match audit_filter(&q, &st.time_zone().clone()) {
        Ok(f) => f,
        Err(m) => {
            data.insert("filter_error".into(), json!(m));
            AuditQuery { limit: Some(PAGE), ..Default::default() }
        }
    };
    let (entries, next) = match crises::audit_entries(&st, filter).await {
        Ok(p) => (p.entries, p.next_after),
        Err(AppError::Problem { code: repli_proto::ProblemCode::InvalidQuery, detail }) => {
            data.insert("filter_error".into(), json!(detail));
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
    data.insert("q".into(), json!(complete(&q, &FILTERS)));
    data.insert("next".into(), json!(next.map(|_| format!("/journal?{}", qs(&next_q)))));
    data.insert("export_csv".into(), json!(format!("/journal/export?format=csv&{}", qs(&export_q))));
    data.insert("export_jsonl".into(), json!(format!("/journal/export?format=jsonl&{}", qs(&export_q))));
    data.insert(
        "entries".into(),
        json!(entries.iter().map(|e| json!({ "seq": e.seq, "at": e.at, "who": e.actor_name, "role": e.actor_role, "crisis": e.crisis, "action": e.action, "target": e.target, "details": e.details })).collect::<Vec<_>>()),
    );
    render(&st, StatusCode::OK, "journal", &Value::Object(data))
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
