//! The procedures pack, rendered on demand from the crisis as it stands; the credential
//! sheets go to ops only.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use repli_core::{Actor, Role};
use repli_docs::{CREDENTIAL_SHEETS, DOCUMENTS, Documents, Metropole, PackInput};
use repli_proto::api::{LoanView, LogEntryView};

use crate::AppState;
use crate::api::visible_crisis;
use crate::auth::Authed;
use crate::error::ApiError;

/// Documents carry their print stylesheet inline and no script.
const DOCUMENT_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'";

async fn render(st: &AppState, a: &Actor, id: &str) -> Result<(String, Vec<(String, String)>), ApiError> {
    let r = visible_crisis(st, a, id).await?;
    let crisis_id = r.id.clone();
    let convention = st
        .store
        .commune(&r.commune)
        .await?
        .and_then(|c| c.convention)
        .map(|c| format!("le {} (délibération {})", c.signed_on, c.deliberation_ref));
    let view = crate::api::crisis_view_with_history(st, r).await?;
    let loans: Vec<LoanView> = crate::inventory::loans_of(st, &crisis_id).await?;
    let log: Vec<LogEntryView> =
        st.store.log_entries(&crisis_id).await?.into_iter().map(crate::api::log_view).collect();
    let wipes = st.store.wipe_certificates(&crisis_id).await?;
    let d = &st.config.documents;
    let metropole = Metropole {
        astreinte_phone: d.astreinte_phone.clone(),
        astreinte_email: d.astreinte_email.clone(),
        csirt_phone: d.csirt_phone.clone(),
    };
    let input = PackInput {
        convention,
        loans: &loans,
        log: &log,
        ..PackInput::minimal(&view, &metropole, &wipes, st.clock.now())
    };
    let docs = st.documents.render(&input).map_err(|e| ApiError::Internal(e.to_string()))?;
    // Credential sheets are for ops: nobody else sees them listed.
    let docs = docs.into_iter().filter(|(name, _)| a.role == Role::Ops || name != CREDENTIAL_SHEETS).collect();
    Ok((crisis_id.to_string(), docs))
}

pub async fn list(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    Path(id): Path<String>,
) -> Result<axum::Json<Vec<String>>, ApiError> {
    let (_, docs) = render(&st, a, &id).await?;
    Ok(axum::Json(docs.into_iter().map(|(n, _)| n).collect()))
}

pub async fn one(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if !DOCUMENTS.iter().any(|(_, f)| *f == file) {
        return Err(ApiError::NotFound { code: "unknown_document", detail: "Document inconnu.".into() });
    }
    if file == CREDENTIAL_SHEETS && a.role != Role::Ops {
        return Err(ApiError::Forbidden("Les fiches identifiants sont réservées à l'équipe d'exploitation."));
    }
    let (crisis, docs) = render(&st, a, &id).await?;
    if file == CREDENTIAL_SHEETS {
        // The only place initial passwords ever appear: handed over once, audited.
        let once = repli_store::Record {
            commune: crisis.split('-').next().map(str::to_owned),
            crisis: Some(crisis.clone()),
            action: "documents.credential_sheets".into(),
            target: CREDENTIAL_SHEETS.into(),
            details: serde_json::json!({}),
        };
        if !st.store.record_once(&once, repli_store::By::User(a), st.clock.now()).await? {
            return Err(ApiError::Conflict {
                code: "credential_sheets_issued",
                detail: "Les fiches identifiants ont déjà été délivrées pour cette crise (voir le journal d'audit)."
                    .into(),
            });
        }
    }
    let (_, content) = docs
        .into_iter()
        .find(|(n, _)| *n == file)
        .ok_or_else(|| ApiError::NotFound { code: "unknown_document", detail: "Document inconnu.".into() })?;
    let ct = if file.ends_with(".md") { "text/markdown; charset=utf-8" } else { "text/html; charset=utf-8" };
    let mut resp = (StatusCode::OK, [(header::CONTENT_TYPE, ct)], content).into_response();
    resp.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(DOCUMENT_CSP));
    Ok(resp)
}

pub async fn zip(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (crisis, docs) = render(&st, a, &id).await?;
    // Credential sheets are handed over once, on their own, never in the zip.
    let docs: Vec<_> = docs.into_iter().filter(|(name, _)| name != CREDENTIAL_SHEETS).collect();
    let bytes = Documents::zip_bytes(&docs).map_err(|e| ApiError::Internal(e.to_string()))?;
    let disposition = format!("attachment; filename=\"pack-{crisis}.zip\"");
    let mut resp = (StatusCode::OK, [(header::CONTENT_TYPE, "application/zip")], bytes).into_response();
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}
