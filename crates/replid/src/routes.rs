//! The route table: every route of the API and the pages with its access rule, and the layer
//! that enforces it. Handlers live in their own modules and never import one another; they
//! parse, call one operation of `repli-app`, and render.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use axum::{Json, Router};
use repli_app::AppError;
use repli_core::Permission;
use repli_proto::ProblemCode;
use repli_proto::api::{Health, Me};

use crate::auth::Authed;
use crate::error::ApiError;
use crate::{
    AppState, actions, crises, documents, inventory, journal, pages, sheets, signin, steps, tenant, users, web,
};

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
        (Method::GET, "/readyz", Public, get(ready)),
        (Method::GET, "/static/repli.css", Public, get(signin::stylesheet)),
        (Method::GET, "/connexion", Public, get(signin::show_login)),
        (Method::POST, "/connexion", Public, post(signin::login)),
        (Method::GET, "/", Page(P::OwnAccount), get(pages::home)),
        (Method::GET, "/m365", Page(P::OperateCrisis), get(tenant::page)),
        (Method::POST, "/m365", Page(P::OperateCrisis), post(tenant::rerun)),
        (Method::POST, "/deconnexion", Page(P::OwnAccount), post(signin::logout)),
        (Method::GET, "/demande", Page(P::RequestCrisis), get(pages::request_form)),
        (Method::POST, "/demande", Page(P::RequestCrisis), post(pages::request_submit)),
        (Method::GET, "/crises/{id}", Page(P::ReadCrises), get(pages::crisis)),
        (Method::POST, "/crises/{id}/action", Page(P::OperateCrisis), post(pages::crisis_action)),
        (Method::GET, "/crises/{id}/annulation", Page(P::CancelCrisis), get(actions::cancel_page)),
        (Method::POST, "/crises/{id}/annulation", Page(P::CancelCrisis), post(actions::cancel)),
        (Method::GET, "/crises/{id}/restitution", Page(P::OperateCrisis), get(actions::handback_page)),
        (Method::POST, "/crises/{id}/restitution", Page(P::OperateCrisis), post(actions::handback)),
        (Method::GET, "/crises/{id}/etapes/{step}/ignorer", Page(P::OperateCrisis), get(actions::skip_page)),
        (Method::POST, "/crises/{id}/etapes/{step}/ignorer", Page(P::OperateCrisis), post(actions::skip)),
        (Method::POST, "/crises/{id}/etapes/{step}/relancer", Page(P::OperateCrisis), post(actions::retry)),
        (Method::GET, "/crises/{id}/fiches-identifiants", Page(P::OperateCrisis), get(sheets::page)),
        (Method::POST, "/crises/{id}/fiches-identifiants", Page(P::OperateCrisis), post(sheets::issue)),
        (
            Method::GET,
            "/crises/{id}/fiches-identifiants/reinitialiser",
            Page(P::OperateCrisis),
            get(sheets::reissue_page),
        ),
        (Method::POST, "/crises/{id}/fiches-identifiants/reinitialiser", Page(P::OperateCrisis), post(sheets::reissue)),
        (Method::GET, "/crises/{id}/pertes/{serial}", Page(P::ManageInventory), get(actions::write_off_page)),
        (Method::POST, "/crises/{id}/pertes/{serial}", Page(P::ManageInventory), post(actions::write_off)),
        (Method::POST, "/crises/{id}/main-courante", Page(P::WriteCrisisLog), post(pages::add_log)),
        (Method::POST, "/crises/{id}/agents", Page(P::WriteCrisisLog), post(pages::set_agents)),
        (Method::POST, "/crises/{id}/agents/effectif", Page(P::OperateCrisis), post(pages::accept_agents)),
        (Method::POST, "/crises/{id}/taches/{step}", Page(P::OperateCrisis), post(pages::confirm_task)),
        (Method::POST, "/crises/{id}/retour", Page(P::ManageInventory), post(pages::check_in)),
        (Method::GET, "/taches", Page(P::OperateCrisis), get(pages::tasks)),
        (Method::GET, "/inventaire", Page(P::ReadInventory), get(pages::inventory)),
        (Method::GET, "/inventaire/{serial}", Page(P::ReadInventory), get(pages::item)),
        (Method::GET, "/journal", Page(P::ReadAudit), get(pages::journal)),
        (Method::GET, "/journal/export", Page(P::ReadAudit), get(pages::journal_export)),
        (Method::GET, "/rapport-sla", Page(P::ReadSlaReport), get(pages::sla_report)),
        (Method::GET, "/api/v1/me", Requires(P::OwnAccount), get(me)),
        (Method::GET, "/api/v1/communes", Requires(P::ReadCommunes), get(crises::list_communes)),
        (Method::GET, "/api/v1/communes/{insee}", Requires(P::ReadCommunes), get(crises::get_commune)),
        (Method::GET, "/api/v1/crises", Requires(P::ReadCrises), get(crises::list)),
        (Method::POST, "/api/v1/crises", Requires(P::RequestCrisis), post(crises::create)),
        (Method::GET, "/api/v1/crises/{id}", Requires(P::ReadCrises), get(crises::get)),
        (Method::POST, "/api/v1/crises/{id}/actions/cancel", Requires(P::CancelCrisis), post(crises::cancel)),
        (Method::POST, "/api/v1/crises/{id}/actions/{action}", Requires(P::OperateCrisis), post(crises::act)),
        (Method::GET, "/api/v1/crises/{id}/log", Requires(P::ReadCrises), get(crises::log)),
        (Method::POST, "/api/v1/crises/{id}/log", Requires(P::WriteCrisisLog), post(crises::add_log)),
        (Method::POST, "/api/v1/crises/{id}/sla/suspend", Requires(P::OperateCrisis), post(crises::suspend_sla)),
        (Method::POST, "/api/v1/crises/{id}/sla/resume", Requires(P::OperateCrisis), post(crises::resume_sla)),
        (Method::PUT, "/api/v1/crises/{id}/legal", Requires(P::WriteCrisisLog), put(crises::set_legal_facts)),
        (Method::POST, "/api/v1/crises/{id}/legal/{kind}/done", Requires(P::WriteCrisisLog), post(crises::legal_done)),
        (Method::GET, "/api/v1/crises/{id}/steps", Requires(P::ReadCrises), get(steps::list)),
        (Method::POST, "/api/v1/crises/{id}/steps/{step}/done", Requires(P::OperateCrisis), post(steps::done)),
        (Method::POST, "/api/v1/crises/{id}/steps/{step}/retry", Requires(P::OperateCrisis), post(steps::retry)),
        (Method::POST, "/api/v1/crises/{id}/steps/{step}/skip", Requires(P::OperateCrisis), post(steps::skip)),
        (Method::GET, "/api/v1/tasks", Requires(P::OperateCrisis), get(steps::tasks)),
        (Method::GET, "/api/v1/sla/report", Requires(P::ReadSlaReport), get(crises::sla_report)),
        (Method::GET, "/api/v1/notifications", Requires(P::OperateCrisis), get(crises::notifications)),
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
        (Method::POST, "/api/v1/crises/{id}/agents", Requires(P::WriteCrisisLog), post(inventory::add_agents)),
        (Method::POST, "/api/v1/crises/{id}/agents/accept", Requires(P::OperateCrisis), post(inventory::accept_agents)),
        (Method::GET, "/api/v1/crises/{id}/loans", Requires(P::ReadCrises), get(inventory::loans)),
        (Method::GET, "/api/v1/crises/{id}/documents", Requires(P::ReadCrises), get(documents::list)),
        (Method::GET, "/api/v1/crises/{id}/documents.zip", Requires(P::ReadCrises), get(documents::zip)),
        (Method::GET, "/api/v1/crises/{id}/documents/{file}", Requires(P::ReadCrises), get(documents::one)),
        (
            Method::POST,
            "/api/v1/crises/{id}/credential-sheets",
            Requires(P::OperateCrisis),
            post(documents::issue_sheets),
        ),
        (
            Method::POST,
            "/api/v1/crises/{id}/credential-sheets/reissue",
            Requires(P::OperateCrisis),
            post(documents::reissue_sheets),
        ),
        (Method::POST, "/api/v1/crises/{id}/loans", Requires(P::ManageInventory), post(inventory::lend)),
        (Method::POST, "/api/v1/crises/{id}/checkin", Requires(P::ManageInventory), post(inventory::check_in)),
        (Method::POST, "/api/v1/crises/{id}/write-off", Requires(P::ManageInventory), post(inventory::write_off)),
        (Method::GET, "/api/v1/audit/verify", Requires(P::ReadAudit), get(journal::verify)),
        (Method::GET, "/api/v1/audit/entries", Requires(P::ReadAudit), get(journal::entries)),
        (Method::GET, "/api/v1/audit/bundle", Requires(P::ReadAudit), get(journal::bundle)),
        (Method::GET, "/api/v1/audit/head", Requires(P::ReadAudit), get(journal::head)),
        (Method::GET, "/api/v1/m365/preflight", Requires(P::OperateCrisis), get(tenant::preflight)),
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
        Err(AppError::Unauthenticated) if page => return Redirect::to("/connexion").into_response(),
        Err(e) => return ApiError(e).into_response(),
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
        return ApiError(AppError::Forbidden("Action non autorisée pour votre rôle.")).into_response();
    }
    if let Some(expected) = &csrf {
        let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD);
        let header_ok = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| web::same_secret(expected, v));
        if unsafe_method && !page && !header_ok {
            return ApiError(AppError::Forbidden("Jeton CSRF absent ou invalide (en-tête X-CSRF-Token)."))
                .into_response();
        }
        req.extensions_mut().insert(web::SessionCsrf(expected.clone()));
    }
    tracing::Span::current().record("user", actor.user_id);
    req.extensions_mut().insert(actor);
    next.run(req).await
}

/// Longest request target served (path and query).
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Largest header section served, and most header fields.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
pub const MAX_HEADERS: usize = 64;

/// Refuses an oversized request target (414) or header section (431) with a body a client can
/// read: a problem document under `/api`, a French page elsewhere. These limits sit below
/// hyper's own (a 400 KiB head, 100 fields), so only requests beyond those get hyper's bare
/// answer, before any of Repli's code runs.
pub async fn request_limits(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(0, |p| p.as_str().len());
    let header_bytes: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if target > MAX_URI_BYTES {
        if for_api(uri) {
            let detail = format!("Adresse trop longue : {MAX_URI_BYTES} octets au plus.");
            return ApiError::problem(ProblemCode::UriTooLong, detail).into_response();
        }
        return web::error_page(
            &st,
            StatusCode::URI_TOO_LONG,
            "Adresse trop longue",
            "Cette adresse est trop longue pour être une page de Repli. Revenez à l'accueil.",
        );
    }
    if header_bytes > MAX_HEADER_BYTES || req.headers().len() > MAX_HEADERS {
        if for_api(uri) {
            let detail =
                format!("En-têtes trop volumineux : {MAX_HEADER_BYTES} octets et {MAX_HEADERS} champs au plus.");
            return ApiError::problem(ProblemCode::HeadersTooLarge, detail).into_response();
        }
        return web::error_page(
            &st,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Requête refusée",
            "Votre navigateur a envoyé trop de données avec la page (cookies trop nombreux ?). Effacez les cookies de ce site puis réessayez.",
        );
    }
    next.run(req).await
}

/// Under `/api`, a problem document; elsewhere (a person's browser), a French page.
fn for_api(uri: &Uri) -> bool {
    uri.path().starts_with("/api/") || matches!(uri.path(), "/api" | "/healthz" | "/readyz")
}

async fn not_found(State(st): State<AppState>, uri: Uri) -> Response {
    if for_api(&uri) {
        return ApiError::problem(ProblemCode::NotFound, "Ressource introuvable.").into_response();
    }
    web::error_page(
        &st,
        StatusCode::NOT_FOUND,
        "Page introuvable",
        "Cette adresse ne correspond à aucune page de Repli. Revenez à l'accueil pour retrouver vos crises.",
    )
}

async fn method_not_allowed(State(st): State<AppState>, uri: Uri) -> Response {
    if for_api(&uri) {
        return ApiError::problem(ProblemCode::MethodNotAllowed, "Méthode non autorisée sur cette ressource.")
            .into_response();
    }
    web::error_page(
        &st,
        StatusCode::METHOD_NOT_ALLOWED,
        "Action impossible",
        "Cette page ne s'utilise pas ainsi. Revenez à l'accueil et utilisez les boutons de la page.",
    )
}

async fn health() -> Json<Health> {
    Json(Health { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into() })
}

/// Ready to work: the database takes writes, the engine runs, the last Microsoft 365 preflight
/// did not fail. 503 otherwise, saying which (and nothing more: the route is public).
async fn ready(State(st): State<AppState>) -> Response {
    let database = st.store.writable().await.is_ok();
    let engine = st.engine_running.load(std::sync::atomic::Ordering::Acquire);
    let m365 = repli_app::preflight::last(st.app.services()).is_none_or(|run| run.report.ok);
    let r = repli_proto::api::Readiness { ready: database && engine && m365, database, engine, m365 };
    let status = if r.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(r)).into_response()
}

async fn me(Authed(a): Authed) -> Json<Me> {
    Json(Me { user_id: a.user_id, name: a.name, role: a.role, commune: a.commune })
}
