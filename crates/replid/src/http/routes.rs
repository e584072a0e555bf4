//! The route table: every route of the API and the pages with its access rule, and the layer
//! that enforces it. Handlers live in their own modules and never import one another; they
//! parse, call one operation of `repli-app`, and render.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use repli_app::AppError;
use repli_app::metrics::SignInFailure;
use repli_proto::ProblemCode;

use crate::http::error::ApiError;
use crate::http::spec::Route;
pub use crate::http::spec::{Access, RouteSpec};
use crate::{AppState, api, web};

/// Every route with its access rule and its documentation, gathered from the areas that declare
/// them: the router and the OpenAPI document are both built from this table, so a route cannot
/// exist without a policy entry or without its entry in the document.
fn table() -> Vec<Route> {
    [
        api::service::routes(),
        web::signin::routes(),
        api::crises::routes(),
        api::documents::routes(),
        api::exercises::routes(),
        api::inventory::routes(),
        api::journal::routes(),
        api::steps::routes(),
        api::tenant::routes(),
        api::users::routes(),
        web::accounts::routes(),
        web::confirm::routes(),
        web::crisis::routes(),
        web::exercises::routes(),
        web::home::routes(),
        web::inventory::routes(),
        web::journal::routes(),
        web::m365::routes(),
        web::notifications::routes(),
        web::request::routes(),
        web::retex::routes(),
        web::dns::routes(),
        web::sheets::routes(),
        web::sla::routes(),
        web::tasks::routes(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The route table without its handlers.
pub fn route_specs() -> Vec<RouteSpec> {
    table().into_iter().map(|(method, path, access, _, doc)| RouteSpec { method, path, access, doc }).collect()
}

/// The API router: each route behind the check of its access rule.
pub fn routes(state: &AppState) -> Router<AppState> {
    let mut router = Router::new();
    for (_, path, access, handler, _) in table() {
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
    let (actor, csrf) = match crate::http::auth::authenticate(&st, req.headers()).await {
        Ok(v) => v,
        Err(AppError::Unauthenticated) => {
            // Counted when credentials were presented and refused, not when none came.
            let telemetry = &st.app.services().telemetry;
            if req.headers().contains_key(axum::http::header::AUTHORIZATION) {
                telemetry.sign_in_failed(SignInFailure::Token);
            } else if crate::http::auth::has_session_cookie(req.headers()) {
                telemetry.sign_in_failed(SignInFailure::Session);
            }
            if page {
                return Redirect::to("/connexion").into_response();
            }
            return ApiError(AppError::Unauthenticated).into_response();
        }
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
            .is_some_and(|v| repli_app::accounts::same_secret(expected, v));
        if unsafe_method && !page && !header_ok {
            return ApiError(AppError::Forbidden("Jeton CSRF absent ou invalide (en-tête X-CSRF-Token)."))
                .into_response();
        }
        req.extensions_mut().insert(web::SessionCsrf(expected.clone()));
    }
    tracing::Span::current().record("user", actor.user_id);
    req.extensions_mut().insert(actor);
    let mut resp = next.run(req).await;
    // A form's message after its redirect is held for the session's next load of the page.
    web::flash::keep_pending(&st, csrf.as_deref(), &mut resp);
    resp
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
    is_api_path(uri.path())
}

/// Whether a path is the API's (and the probes'), answered with problem documents.
pub fn is_api_path(path: &str) -> bool {
    path.starts_with("/api/") || matches!(path, "/api" | "/healthz" | "/readyz" | "/metrics")
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
