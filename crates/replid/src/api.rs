//! The HTTP API, version 1. Every handler starts with the caller's permission; a DGS is scoped
//! to their own commune, and another commune's crisis is "not found" to them.

use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use axum::{Json, Router};
use repli_core::audit::AuditBundle;
use repli_core::{
    CrisisAction, CrisisId, CrisisState, FieldError, InseeCode, LegalKind, LogKind, Permission, Role, text,
};
use repli_proto::IDEMPOTENCY_HEADER;
use repli_proto::api::{
    ActionRequest, AuditPage, AuditQuery, AuditVerifyView, CommuneView, CrisisQuery, CrisisRequest, CrisisView, Health,
    LegalDoneRequest, LegalFactsRequest, LogEntryRequest, LogEntryView, Me, NotificationView, SlaReportLine,
    SuspendRequest,
};
use repli_store::{AuditFilter, By, CrisisFilter, NewCrisis, StoreError};
use sha2::{Digest, Sha256};

use crate::auth::Authed;
use crate::error::ApiError;
use crate::{AppState, documents, inventory, pages, steps, users, views, web};

/// Most agents one request may name.
pub const MAX_AGENTS: u32 = 500;
/// Longest accepted idempotency key.
const MAX_IDEMPOTENCY_KEY: usize = 128;

/// JSON body extractor whose rejections are problem documents.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state).await.map(|Json(v)| ApiJson(v)).map_err(ApiError::from)
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, unauthenticated.
    Public,
    /// An authenticated user whose role has this permission (the policy table in repli-core).
    Requires(Permission),
    /// The same, for a web page: without a session, the browser is sent to the sign-in page.
    Page(Permission),
}

/// One route of the API, as the authorization matrix test sees it.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

/// Every route with its access rule: the router is built from this table, so a route cannot
/// exist without a policy entry.
fn table() -> Vec<(Method, &'static str, Access, MethodRouter<AppState>)> {
    use Access::{Page, Public, Requires};
    use Permission as P;
    vec![
        (Method::GET, "/healthz", Public, get(health)),
        (Method::GET, "/static/repli.css", Public, get(web::stylesheet)),
        (Method::GET, "/connexion", Public, get(web::show_login)),
        (Method::POST, "/connexion", Public, post(web::login)),
        (Method::GET, "/", Page(P::OwnAccount), get(pages::home)),
        (Method::POST, "/deconnexion", Page(P::OwnAccount), post(web::logout)),
        (Method::GET, "/demande", Page(P::RequestCrisis), get(pages::request_form)),
        (Method::POST, "/demande", Page(P::RequestCrisis), post(pages::request_submit)),
        (Method::GET, "/crises/{id}", Page(P::ReadCrises), get(pages::crisis)),
        (Method::POST, "/crises/{id}/action", Page(P::OperateCrisis), post(pages::crisis_action)),
        (Method::POST, "/crises/{id}/annulation", Page(P::CancelCrisis), post(pages::cancel)),
        (Method::POST, "/crises/{id}/main-courante", Page(P::WriteCrisisLog), post(pages::add_log)),
        (Method::POST, "/crises/{id}/agents", Page(P::WriteCrisisLog), post(pages::set_agents)),
        (Method::POST, "/crises/{id}/taches/{step}", Page(P::OperateCrisis), post(pages::confirm_task)),
        (Method::POST, "/crises/{id}/retour", Page(P::ManageInventory), post(pages::check_in)),
        (Method::GET, "/taches", Page(P::OperateCrisis), get(pages::tasks)),
        (Method::GET, "/inventaire", Page(P::ReadInventory), get(pages::inventory)),
        (Method::GET, "/inventaire/{serial}", Page(P::ReadInventory), get(pages::item)),
        (Method::GET, "/journal", Page(P::ReadAudit), get(pages::journal)),
        (Method::GET, "/journal/export", Page(P::ReadAudit), get(pages::journal_export)),
        (Method::GET, "/rapport-sla", Page(P::ReadSlaReport), get(pages::sla_report)),
        (Method::GET, "/api/v1/me", Requires(P::OwnAccount), get(me)),
        (Method::GET, "/api/v1/communes", Requires(P::ReadCommunes), get(list_communes)),
        (Method::GET, "/api/v1/communes/{insee}", Requires(P::ReadCommunes), get(get_commune)),
        (Method::GET, "/api/v1/crises", Requires(P::ReadCrises), get(list_crises)),
        (Method::POST, "/api/v1/crises", Requires(P::RequestCrisis), post(create_crisis)),
        (Method::GET, "/api/v1/crises/{id}", Requires(P::ReadCrises), get(get_crisis)),
        (Method::POST, "/api/v1/crises/{id}/actions/cancel", Requires(P::CancelCrisis), post(cancel)),
        (Method::POST, "/api/v1/crises/{id}/actions/{action}", Requires(P::OperateCrisis), post(act)),
        (Method::GET, "/api/v1/crises/{id}/log", Requires(P::ReadCrises), get(crisis_log)),
        (Method::POST, "/api/v1/crises/{id}/log", Requires(P::WriteCrisisLog), post(add_log)),
        (Method::POST, "/api/v1/crises/{id}/sla/suspend", Requires(P::OperateCrisis), post(suspend_sla)),
        (Method::POST, "/api/v1/crises/{id}/sla/resume", Requires(P::OperateCrisis), post(resume_sla)),
        (Method::PUT, "/api/v1/crises/{id}/legal", Requires(P::WriteCrisisLog), put(set_legal_facts)),
        (Method::POST, "/api/v1/crises/{id}/legal/{kind}/done", Requires(P::WriteCrisisLog), post(legal_done)),
        (Method::GET, "/api/v1/crises/{id}/steps", Requires(P::ReadCrises), get(steps::list)),
        (Method::POST, "/api/v1/crises/{id}/steps/{step}/done", Requires(P::OperateCrisis), post(steps::done)),
        (Method::POST, "/api/v1/crises/{id}/steps/{step}/retry", Requires(P::OperateCrisis), post(steps::retry)),
        (Method::POST, "/api/v1/crises/{id}/steps/{step}/skip", Requires(P::OperateCrisis), post(steps::skip)),
        (Method::GET, "/api/v1/tasks", Requires(P::OperateCrisis), get(steps::tasks)),
        (Method::GET, "/api/v1/sla/report", Requires(P::ReadSlaReport), get(sla_report)),
        (Method::GET, "/api/v1/notifications", Requires(P::OperateCrisis), get(notifications)),
        (Method::POST, "/api/v1/inventory/import", Requires(P::ManageInventory), post(inventory::import)),
        (Method::GET, "/api/v1/inventory", Requires(P::ReadInventory), get(inventory::status)),
        (Method::GET, "/api/v1/inventory/items", Requires(P::ReadInventory), get(inventory::items)),
        (Method::GET, "/api/v1/inventory/items/{serial}", Requires(P::ReadInventory), get(inventory::item)),
        (Method::POST, "/api/v1/inventory/items/{serial}/wipe", Requires(P::ManageInventory), post(inventory::wipe)),
        (
            Method::POST,
            "/api/v1/inventory/items/{serial}/service",
            Requires(P::ManageInventory),
            post(inventory::service),
        ),
        (Method::GET, "/api/v1/crises/{id}/agents", Requires(P::ReadCrises), get(inventory::agents)),
        (Method::PUT, "/api/v1/crises/{id}/agents", Requires(P::WriteCrisisLog), put(inventory::set_agents)),
        (Method::GET, "/api/v1/crises/{id}/loans", Requires(P::ReadCrises), get(inventory::loans)),
        (Method::GET, "/api/v1/crises/{id}/documents", Requires(P::ReadCrises), get(documents::list)),
        (Method::GET, "/api/v1/crises/{id}/documents.zip", Requires(P::ReadCrises), get(documents::zip)),
        (Method::GET, "/api/v1/crises/{id}/documents/{file}", Requires(P::ReadCrises), get(documents::one)),
        (Method::POST, "/api/v1/crises/{id}/loans", Requires(P::ManageInventory), post(inventory::lend)),
        (Method::POST, "/api/v1/crises/{id}/checkin", Requires(P::ManageInventory), post(inventory::check_in)),
        (Method::POST, "/api/v1/crises/{id}/write-off", Requires(P::ManageInventory), post(inventory::write_off)),
        (Method::GET, "/api/v1/audit/verify", Requires(P::ReadAudit), get(audit_verify)),
        (Method::GET, "/api/v1/audit/entries", Requires(P::ReadAudit), get(audit_entries)),
        (Method::GET, "/api/v1/audit/bundle", Requires(P::ReadAudit), get(audit_bundle)),
        (Method::GET, "/api/v1/users", Requires(P::ManageUsers), get(users::list)),
        (Method::POST, "/api/v1/users", Requires(P::ManageUsers), post(users::create)),
        (Method::POST, "/api/v1/users/{uid}/tokens", Requires(P::ManageUsers), post(users::issue_token)),
        (Method::DELETE, "/api/v1/users/{uid}/tokens", Requires(P::ManageUsers), delete(users::revoke_tokens)),
        (Method::PUT, "/api/v1/users/{uid}/password", Requires(P::ManageUsers), put(users::set_password)),
    ]
}

/// The route table without its handlers.
pub fn route_specs() -> Vec<RouteSpec> {
    table().into_iter().map(|(method, path, access, _)| RouteSpec { method, path, access }).collect()
}

/// The API router: each route behind the check of its access rule.
pub fn routes(state: &AppState) -> Router<AppState> {
    let mut router = Router::new();
    for (_, path, access, handler) in table() {
        let handler = match access {
            Access::Public => handler,
            Access::Requires(_) | Access::Page(_) => handler.route_layer(middleware::from_fn_with_state(
                state.clone(),
                move |st: State<AppState>, req: Request, next: Next| authorize(st, access, req, next),
            )),
        };
        router = router.route(path, handler);
    }
    router.fallback(not_found).method_not_allowed_fallback(method_not_allowed)
}

/// Authenticates the caller and checks the route's permission; the handler then finds the
/// actor in the request's extensions ([`Authed`]) and applies resource scoping. A caller who
/// came with a session cookie must also present the session's CSRF token on API writes (pages
/// check the token of their forms).
async fn authorize(State(st): State<AppState>, access: Access, mut req: Request, next: Next) -> Response {
    let (permission, page) = match access {
        Access::Public => return next.run(req).await,
        Access::Requires(p) => (p, false),
        Access::Page(p) => (p, true),
    };
    let (actor, csrf) = match crate::auth::authenticate(&st, req.headers()).await {
        Ok(v) => v,
        Err(ApiError::Unauthenticated) if page => return Redirect::to("/connexion").into_response(),
        Err(e) => return e.into_response(),
    };
    if page && csrf.is_none() {
        // Pages are for browser sessions; a bearer token does not open them.
        return Redirect::to("/connexion").into_response();
    }
    if !actor.may(permission) {
        if page {
            return web::error_page(
                &st,
                StatusCode::FORBIDDEN,
                "Accès refusé",
                "Cette page n'est pas ouverte à votre rôle.",
            );
        }
        return ApiError::Forbidden("Action non autorisée pour votre rôle.").into_response();
    }
    if let Some(expected) = &csrf {
        let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD);
        let header_ok = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| web::same_secret(expected, v));
        if unsafe_method && !page && !header_ok {
            return ApiError::Forbidden("Jeton CSRF absent ou invalide (en-tête X-CSRF-Token).").into_response();
        }
        req.extensions_mut().insert(web::SessionCsrf(expected.clone()));
    }
    tracing::Span::current().record("user", actor.user_id);
    req.extensions_mut().insert(actor);
    next.run(req).await
}

async fn not_found() -> ApiError {
    ApiError::NotFound { code: "not_found", detail: "Ressource introuvable.".into() }
}

async fn method_not_allowed() -> Response {
    let mut r = ApiError::BadRequest {
        code: "method_not_allowed",
        detail: "Méthode non autorisée sur cette ressource.".into(),
    }
    .into_response();
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r
}

async fn health() -> Json<Health> {
    Json(Health { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into() })
}

async fn me(Authed(a): Authed) -> Json<Me> {
    Json(Me { user_id: a.user_id, name: a.name, role: a.role, commune: a.commune })
}

fn parse_insee(s: &str) -> Result<InseeCode, ApiError> {
    InseeCode::parse(s)
        .map_err(|e| ApiError::NotFound { code: "unknown_commune", detail: format!("Commune inconnue : {e}.") })
}

fn parse_crisis_id(s: &str) -> Result<CrisisId, ApiError> {
    CrisisId::parse(s).map_err(|_| ApiError::crisis_not_found())
}

async fn list_communes(State(st): State<AppState>, Authed(ref a): Authed) -> Result<Json<Vec<CommuneView>>, ApiError> {
    let all = st.store.communes().await?;
    Ok(Json(all.into_iter().filter(|c| a.may_see_commune(&c.commune.insee)).map(views::commune).collect()))
}

async fn get_commune(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    Path(insee): Path<String>,
) -> Result<Json<CommuneView>, ApiError> {
    let insee = parse_insee(&insee)?;
    if !a.may_see_commune(&insee) {
        return Err(StoreError::UnknownCommune(insee).into());
    }
    let rec = st.store.commune(&insee).await?.ok_or(StoreError::UnknownCommune(insee))?;
    Ok(Json(views::commune(rec)))
}

async fn list_crises(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    q: Result<Query<CrisisQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<CrisisView>>, ApiError> {
    let Query(q) = q?;
    let commune = match (a.role, q.commune) {
        (Role::Dgs, Some(c)) if a.commune.as_ref() != Some(&c) => {
            return Err(ApiError::Forbidden("Vous ne pouvez consulter que les crises de votre commune."));
        }
        (Role::Dgs, _) => a.commune.clone(),
        (_, c) => c,
    };
    let filter = CrisisFilter { commune, state: q.state, open_only: q.open.unwrap_or(false) };
    let now = st.clock.now();
    let records = st.store.crises(&filter).await?;
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let suspensions = st.store.suspensions(&r.id).await?;
        let needs = st.store.needs(Some(r.id.as_str())).await?;
        out.push(views::crisis(&st, r, Vec::new(), &suspensions, &needs, now).await?);
    }
    Ok(Json(out))
}

/// Loads a crisis the actor may see; another commune's crisis does not exist for a DGS.
pub(crate) async fn visible_crisis(
    st: &AppState,
    a: &repli_core::Actor,
    id: &str,
) -> Result<repli_store::CrisisRecord, ApiError> {
    let id = parse_crisis_id(id)?;
    match st.store.crisis(&id).await? {
        Some(r) if a.may_see_commune(&r.commune) => Ok(r),
        _ => Err(ApiError::crisis_not_found()),
    }
}

pub(crate) async fn crisis_view_with_history(
    st: &AppState,
    r: repli_store::CrisisRecord,
) -> Result<CrisisView, ApiError> {
    crisis_with_history(st, r).await
}

pub(crate) async fn crisis_with_history(st: &AppState, r: repli_store::CrisisRecord) -> Result<CrisisView, ApiError> {
    let history = st
        .store
        .audit_entries(&AuditFilter { crisis: Some(r.id.to_string()), limit: 10_000, ..Default::default() })
        .await?;
    let suspensions = st.store.suspensions(&r.id).await?;
    let needs = st.store.needs(Some(r.id.as_str())).await?;
    views::crisis(st, r, history, &suspensions, &needs, st.clock.now()).await
}

/// An instant a person typed: not more than a few minutes in the future.
fn past_instant(field: &str, t: jiff::Timestamp, now: jiff::Timestamp) -> Result<jiff::Timestamp, ApiError> {
    let slack = jiff::SignedDuration::from_mins(5);
    if now.checked_add(slack).is_ok_and(|limit| t > limit) {
        return Err(ApiError::Validation(vec![FieldError::new(field, "cet instant est dans le futur")]));
    }
    Ok(t)
}

async fn suspend_sla(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SuspendRequest>,
) -> Result<Json<CrisisView>, ApiError> {
    let r = visible_crisis(&st, a, &id).await?;
    let reason = text::free_text("reason", &body.reason, 500, true).map_err(|e| ApiError::Validation(vec![e]))?;
    st.store.suspend_sla(&r.id, &reason, a, st.clock.now()).await?;
    let r = visible_crisis(&st, a, &id).await?;
    Ok(Json(crisis_with_history(&st, r).await?))
}

async fn resume_sla(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    Path(id): Path<String>,
) -> Result<Json<CrisisView>, ApiError> {
    let r = visible_crisis(&st, a, &id).await?;
    st.store.resume_sla(&r.id, a, st.clock.now()).await?;
    let r = visible_crisis(&st, a, &id).await?;
    Ok(Json(crisis_with_history(&st, r).await?))
}

async fn set_legal_facts(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<LegalFactsRequest>,
) -> Result<Json<CrisisView>, ApiError> {
    let r = visible_crisis(&st, a, &id).await?;
    let now = st.clock.now();
    if body.aware_at.is_none() && body.personal_data.is_none() {
        return Err(ApiError::Validation(vec![FieldError::new("aware_at", "indiquez aware_at et/ou personal_data")]));
    }
    let aware = body.aware_at.map(|t| past_instant("aware_at", t, now)).transpose()?;
    st.store.set_legal_facts(&r.id, aware, body.personal_data, a, now).await?;
    let r = visible_crisis(&st, a, &id).await?;
    Ok(Json(crisis_with_history(&st, r).await?))
}

async fn legal_done(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    Path((id, kind)): Path<(String, String)>,
    ApiJson(body): ApiJson<LegalDoneRequest>,
) -> Result<Json<CrisisView>, ApiError> {
    let kind = LegalKind::ALL.into_iter().find(|k| k.as_str() == kind).ok_or_else(|| ApiError::NotFound {
        code: "unknown_legal_clock",
        detail: "Échéance légale inconnue : cnil ou complaint.".into(),
    })?;
    let r = visible_crisis(&st, a, &id).await?;
    let now = st.clock.now();
    let at = past_instant("at", body.at.unwrap_or(now), now)?;
    st.store.mark_legal_done(&r.id, kind, at, a, now).await?;
    let r = visible_crisis(&st, a, &id).await?;
    Ok(Json(crisis_with_history(&st, r).await?))
}

async fn sla_report(State(st): State<AppState>, _: Authed) -> Result<Json<Vec<SlaReportLine>>, ApiError> {
    Ok(Json(sla_report_lines(&st).await?))
}

/// The SLA compliance report (API and auditor page).
pub(crate) async fn sla_report_lines(st: &AppState) -> Result<Vec<SlaReportLine>, ApiError> {
    let st = st.clone();
    let now = st.clock.now();
    let mut lines = Vec::new();
    for r in st.store.crises(&CrisisFilter::default()).await? {
        let suspensions = st.store.suspensions(&r.id).await?;
        let v = views::sla_of(&st, &r, &suspensions, now).await?;
        let stop = r.ready_at.unwrap_or(now);
        let late = st.calendar.business_time_between(v.due, stop).map_err(|e| ApiError::Internal(e.to_string()))?;
        lines.push(SlaReportLine {
            started_at: r.requested_at,
            suspensions: suspensions.iter().map(views::suspension).collect(),
            suspended_seconds: v.suspended.as_secs(),
            due_at: v.due,
            ready_at: r.ready_at,
            status: v.status,
            late_seconds: late.as_secs(),
            crisis: r.id,
            commune: r.commune,
            commune_name: r.commune_name,
            state: r.state,
        });
    }
    lines.reverse();
    Ok(lines)
}

async fn notifications(State(st): State<AppState>, _: Authed) -> Result<Json<Vec<NotificationView>>, ApiError> {
    let list = st.store.notifications(500).await?;
    Ok(Json(
        list.into_iter()
            .map(|n| NotificationView {
                id: n.id,
                key: n.key,
                channel: n.channel,
                crisis: n.crisis,
                subject: n.subject,
                status: n.status,
                attempts: n.attempts,
                last_error: n.last_error,
                created_at: n.created_at,
                sent_at: n.sent_at,
            })
            .collect(),
    ))
}

async fn get_crisis(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    Path(id): Path<String>,
) -> Result<Json<CrisisView>, ApiError> {
    let r = visible_crisis(&st, a, &id).await?;
    Ok(Json(crisis_with_history(&st, r).await?))
}

/// Checks and normalises a request; every invalid field is reported at once.
pub(crate) fn validate(
    req: &CrisisRequest,
    due_at: jiff::Timestamp,
    now: jiff::Timestamp,
) -> Result<NewCrisis, ApiError> {
    let mut errors: Vec<FieldError> = Vec::new();
    let mut keep = |r: Result<String, FieldError>| match r {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let contact_name = keep(text::name("contact.name", &req.contact.name));
    let contact_phone = keep(text::phone("contact.phone", &req.contact.phone));
    let contact_email = req.contact.email.as_deref().map(|e| keep(text::email("contact.email", e)));
    let delivery_address =
        req.delivery_address.as_deref().map(|d| keep(text::free_text("delivery_address", d, 500, true)));
    let notes = keep(text::free_text("notes", req.notes.as_deref().unwrap_or(""), text::NOTE_MAX, false));
    if !(1..=MAX_AGENTS).contains(&req.agents) {
        errors.push(FieldError::new("agents", format!("entre 1 et {MAX_AGENTS} agents")));
    }
    let aware_at = match req.aware_at.map(|t| past_instant("aware_at", t, now)) {
        Some(Err(ApiError::Validation(mut e))) => {
            errors.append(&mut e);
            None
        }
        Some(Ok(t)) => Some(t),
        _ => None,
    };
    let needs = inventory::needs_of(req.needs, req.agents).map_err(|e| errors.push(e)).ok();
    match (contact_name, contact_phone, contact_email, delivery_address, notes) {
        (Some(contact_name), Some(contact_phone), email, address, Some(notes)) if errors.is_empty() => Ok(NewCrisis {
            commune: req.commune.clone(),
            contact_name,
            contact_phone,
            contact_email: email.flatten(),
            agents: req.agents,
            delivery_address: address.flatten(),
            notes,
            due_at,
            aware_at,
            personal_data: req.personal_data,
            needs: needs.unwrap_or_default(),
        }),
        _ => Err(ApiError::Validation(errors)),
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    let bad = || ApiError::BadRequest {
        code: "invalid_idempotency_key",
        detail: format!("En-tête {IDEMPOTENCY_HEADER} invalide : 1 à {MAX_IDEMPOTENCY_KEY} caractères ASCII visibles."),
    };
    let s = v.to_str().map_err(|_| bad())?;
    if s.is_empty() || s.len() > MAX_IDEMPOTENCY_KEY || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(s.to_owned()))
}

async fn create_crisis(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CrisisRequest>,
) -> Result<Response, ApiError> {
    if !a.may_see_commune(&req.commune) {
        return Err(ApiError::Forbidden("Vous ne pouvez demander le kit que pour votre commune."));
    }
    let key = idempotency_key(&headers)?;
    let (rec, created) = request_crisis(&st, a, &req, key.as_deref()).await?;
    let view = crisis_with_history(&st, rec).await?;
    let mut resp = (if created { StatusCode::CREATED } else { StatusCode::OK }, Json(view)).into_response();
    if !created {
        resp.headers_mut().insert("Idempotent-Replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

/// Validates and records a request (the API's and the web form's one path).
pub(crate) async fn request_crisis(
    st: &AppState,
    a: &repli_core::Actor,
    req: &CrisisRequest,
    key: Option<&str>,
) -> Result<(repli_store::CrisisRecord, bool), ApiError> {
    let now = st.clock.now();
    let due = st
        .calendar
        .add_hours(now, st.config.sla.business_hours)
        .map_err(|e| ApiError::Internal(format!("due instant: {e}")))?;
    let new = validate(req, due, now)?;
    let request_hash = hex::encode(Sha256::digest(serde_json::to_vec(req).unwrap_or_default()));
    let idem = key.map(|k| (k, request_hash.as_str()));
    let (rec, created) = st.store.create_crisis(&new, a, idem, now).await?;
    tracing::info!(crisis = %rec.id, created, "crisis requested");
    Ok((rec, created))
}

fn parse_action(s: &str) -> Result<CrisisAction, ApiError> {
    CrisisAction::ALL.into_iter().find(|a| a.as_str() == s).ok_or_else(|| ApiError::NotFound {
        code: "unknown_action",
        detail: format!(
            "Action inconnue. Actions possibles : {}.",
            CrisisAction::ALL.map(CrisisAction::as_str).join(", ")
        ),
    })
}

/// Any action but `cancel` (its own route, with its own permission).
async fn act(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    Path((id, action)): Path<(String, String)>,
    ApiJson(body): ApiJson<ActionRequest>,
) -> Result<Json<CrisisView>, ApiError> {
    let action = parse_action(&action)?;
    if action == CrisisAction::Cancel {
        // Unreachable through the router (the static route wins); refuse rather than bypass.
        return Err(ApiError::Forbidden("Action non autorisée pour votre rôle."));
    }
    apply(&st, a, &id, action, body).await
}

/// `cancel`: ops, or the commune's DGS.
async fn cancel(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ActionRequest>,
) -> Result<Json<CrisisView>, ApiError> {
    apply(&st, a, &id, CrisisAction::Cancel, body).await
}

pub(crate) async fn apply(
    st: &AppState,
    a: &repli_core::Actor,
    id: &str,
    action: CrisisAction,
    body: ActionRequest,
) -> Result<Json<CrisisView>, ApiError> {
    let r = visible_crisis(st, a, id).await?;
    let reason = match body.reason.as_deref() {
        Some(text) => {
            Some(text::free_text("reason", text, text::NOTE_MAX, false).map_err(|e| ApiError::Validation(vec![e]))?)
        }
        None => None,
    };
    if action == CrisisAction::Close
        && let Some(run) =
            st.store.runs_of(&r.id).await?.into_iter().find(|run| run.playbook == "handback" && run.state == "running")
    {
        let left = st.store.steps(run.id).await?.iter().filter(|s| !s.state.is_done()).count();
        return Err(ApiError::Conflict {
            code: "handback_in_progress",
            detail: format!(
                "La restitution suit son déroulé ({left} étape(s) restante(s), voir `repli task list`) : sa dernière étape clora la crise."
            ),
        });
    }
    let rec = st.store.transition(&r.id, action, reason.as_deref(), By::User(a), st.clock.now()).await?;
    // The engine takes over: the activation playbook reserves the kit and provisions it; the
    // hand-back playbook winds it down. A run already started is not started twice.
    let playbook = match action {
        CrisisAction::Activate => Some("activation"),
        CrisisAction::StartHandback => Some("handback"),
        // Called off after activation: wind down whatever was provisioned.
        CrisisAction::Cancel if matches!(r.state, CrisisState::Activated | CrisisState::Provisioning) => {
            Some("handback")
        }
        _ => None,
    };
    if let Some(name) = playbook {
        st.engine.start(&rec.id, name, By::User(a)).await.map_err(|e| ApiError::Internal(e.to_string()))?;
    }
    if matches!(action, CrisisAction::Cancel | CrisisAction::Reject) {
        st.engine.wake();
    }
    tracing::info!(crisis = %rec.id, action = %action, state = %rec.state, "crisis transition");
    Ok(Json(crisis_with_history(st, rec).await?))
}

async fn audit_verify(State(st): State<AppState>, _: Authed) -> Result<Json<AuditVerifyView>, ApiError> {
    let public_key = st.store.checkpoint_public_key();
    let view = match st.store.verify_audit(None).await {
        Ok(s) => AuditVerifyView {
            verified: true,
            entries: s.entries,
            last_seq: s.last_seq,
            last_hash: s.last_hash,
            last_checkpoint: s.last_checkpoint,
            public_key,
            error: None,
            first_bad_seq: None,
            tamper: None,
        },
        Err(StoreError::Chain(e)) => {
            tracing::error!(error = %e, "audit chain does not verify");
            AuditVerifyView {
                verified: false,
                entries: 0,
                last_seq: 0,
                last_hash: String::new(),
                last_checkpoint: None,
                public_key,
                error: Some(e.to_string()),
                first_bad_seq: Some(e.seq()),
                tamper: e.kind(),
            }
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Json(view))
}

/// Longest filter value accepted in an audit query.
const MAX_FILTER: usize = 200;

async fn audit_entries(
    State(st): State<AppState>,
    _: Authed,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let Query(q) = q?;
    let too_long =
        [&q.crisis, &q.commune, &q.actor, &q.action].into_iter().flatten().any(|v| v.chars().count() > MAX_FILTER);
    if too_long {
        return Err(ApiError::BadRequest {
            code: "invalid_query",
            detail: format!("Filtre trop long : {MAX_FILTER} caractères au plus."),
        });
    }
    let limit = q.limit.unwrap_or(500).clamp(1, 5000);
    let entries = st
        .store
        .audit_entries(&AuditFilter {
            crisis: q.crisis,
            commune: q.commune,
            actor: q.actor,
            action: q.action,
            from: q.from,
            to: q.to,
            after_seq: q.after.unwrap_or(0).max(0),
            limit,
        })
        .await?;
    let next_after = if entries.len() == limit as usize { entries.last().map(|e| e.seq) } else { None };
    Ok(Json(AuditPage { entries, next_after }))
}

async fn audit_bundle(State(st): State<AppState>, _: Authed) -> Result<Json<AuditBundle>, ApiError> {
    Ok(Json(st.store.audit_bundle().await?))
}

pub(crate) fn log_view(e: repli_store::LogEntry) -> LogEntryView {
    LogEntryView {
        seq: e.seq,
        at: e.at,
        kind: e.kind,
        type_label: e.kind.label_fr().to_owned(),
        author: e.author,
        role: e.role,
        text: e.text,
    }
}

async fn crisis_log(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    Path(id): Path<String>,
) -> Result<Json<Vec<LogEntryView>>, ApiError> {
    let r = visible_crisis(&st, a, &id).await?;
    Ok(Json(st.store.log_entries(&r.id).await?.into_iter().map(log_view).collect()))
}

async fn add_log(
    State(st): State<AppState>,
    Authed(ref a): Authed,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<LogEntryRequest>,
) -> Result<(StatusCode, Json<LogEntryView>), ApiError> {
    let r = visible_crisis(&st, a, &id).await?;
    let mut errors = Vec::new();
    let kind = body.kind.parse::<LogKind>().map_err(|e| errors.push(FieldError::new("type", e.to_string()))).ok();
    let entry = text::free_text("text", &body.text, text::NOTE_MAX, true).map_err(|e| errors.push(e)).ok();
    let (Some(kind), Some(entry)) = (kind, entry) else {
        return Err(ApiError::Validation(errors));
    };
    let e = st.store.add_log_entry(&r.id, kind, &entry, a, st.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(log_view(e))))
}
