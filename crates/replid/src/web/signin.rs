//! Sign-in with a password, server-side sessions, sign-out, and the stylesheet.

use axum::Form;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use repli_app::accounts::{self, SignInRefusal, random_hex, same_secret};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::http::auth::{Authed, SESSION_COOKIE};
use crate::web::view::{CsrfForm, Layout, NoFields, page};
use crate::web::{ClientAddr, LOGIN_CSRF_COOKIE, error_page};

pub async fn stylesheet() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../../web/repli.css"))
}

/// The sign-in page.
#[derive(Debug, Serialize)]
struct SignInPage<'a> {
    /// The login typed (kept after a refusal).
    login: &'a str,
    error: Option<&'a str>,
    /// The metropolis' on-call number, when configured.
    astreinte: Option<&'a str>,
}

/// The accessibility statement.
#[derive(Debug, Serialize)]
struct AccessibilityPage<'a> {
    astreinte: Option<&'a str>,
}

fn login_page(st: &AppState, jar: CookieJar, status: StatusCode, login: &str, error: Option<&str>) -> Response {
    let Ok(csrf) = random_hex() else {
        return error_page(st, StatusCode::INTERNAL_SERVER_ERROR, "Erreur", "Erreur interne.");
    };
    let cookie = Cookie::build((LOGIN_CSRF_COOKIE, csrf.clone()))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(st.secure_cookies)
        .path("/connexion");
    // No session yet: the form's token is the double-submit cookie's.
    let layout = Layout { csrf, ..Layout::public("Connexion") };
    let body = SignInPage { login, error, astreinte: st.config.documents.astreinte_phone() };
    (jar.add(cookie), page(st, status, "connexion", &layout, &body)).into_response()
}

/// The accessibility statement (public: linked from every page's footer).
pub async fn accessibility(State(st): State<AppState>) -> Response {
    let body = AccessibilityPage { astreinte: st.config.documents.astreinte_phone() };
    page(&st, StatusCode::OK, "accessibilite", &Layout::public("Accessibilité"), &body)
}

pub async fn show_login(State(st): State<AppState>, jar: CookieJar) -> Response {
    login_page(&st, jar, StatusCode::OK, "", None)
}

/// The sign-in form (no session yet: its token is checked against the double-submit cookie).
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    login: String,
    password: String,
    csrf: String,
}

pub async fn login(
    State(st): State<AppState>,
    ClientAddr(addr): ClientAddr,
    jar: CookieJar,
    Form(f): Form<LoginForm>,
) -> Response {
    let login: String = f.login.trim().chars().take(accounts::LOGIN_MAX).collect();
    let expected = jar.get(LOGIN_CSRF_COOKIE).map(|c| c.value().to_owned()).unwrap_or_default();
    if expected.is_empty() || !same_secret(&expected, &f.csrf) {
        return login_page(&st, jar, StatusCode::BAD_REQUEST, &login, Some("Formulaire expiré : veuillez réessayer."));
    }
    let session = match accounts::sign_in(&st, &login, &f.password, &addr).await {
        Ok(Ok(session)) => session,
        Ok(Err(SignInRefusal::Throttled)) => {
            let mut r = login_page(
                &st,
                jar,
                StatusCode::TOO_MANY_REQUESTS,
                &login,
                Some("Trop de tentatives : réessayez dans 15 minutes ou appelez l'astreinte de la métropole."),
            );
            r.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from_static("900"));
            return r;
        }
        Ok(Err(SignInRefusal::Wrong)) => {
            return login_page(
                &st,
                jar,
                StatusCode::UNAUTHORIZED,
                &login,
                Some("Identifiant ou mot de passe incorrect."),
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "sign-in failed");
            return error_page(&st, StatusCode::INTERNAL_SERVER_ERROR, "Erreur", "Erreur interne.");
        }
    };
    let cookie = Cookie::build((SESSION_COOKIE, session.sid))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(st.secure_cookies)
        .path("/");
    let jar = jar.remove(Cookie::build(LOGIN_CSRF_COOKIE).path("/connexion")).add(cookie);
    (jar, Redirect::to("/")).into_response()
}

pub async fn logout(State(st): State<AppState>, Authed(a): Authed, jar: CookieJar, _: CsrfForm<NoFields>) -> Response {
    if let Some(c) = jar.get(SESSION_COOKIE)
        && let Err(e) = accounts::sign_out(&st, &a, c.value()).await
    {
        tracing::error!(error = %e, "cannot close the session");
    }
    (jar.remove(Cookie::build(SESSION_COOKIE).path("/")), Redirect::to("/connexion")).into_response()
}

/// This area's routes, each with its access rule and its documentation (`http::routes`
/// gathers every area's into the one table).
pub(crate) fn routes() -> Vec<crate::http::spec::Route> {
    use crate::http::spec::Access::{Page, Public};
    use crate::http::spec::Answer;
    use crate::http::spec::Doc;
    use axum::http::Method;
    use axum::routing;
    use repli_core::Permission as P;
    vec![
        (
            Method::GET,
            "/static/repli.css",
            Public,
            routing::get(stylesheet),
            Doc::answering("The web pages' stylesheet", Answer::Css),
        ),
        (Method::GET, "/connexion", Public, routing::get(show_login), Doc::page("Sign-in page")),
        (Method::GET, "/accessibilite", Public, routing::get(accessibility), Doc::page("The accessibility statement")),
        (Method::POST, "/connexion", Public, routing::post(login), Doc::form("Sign in with a login and password")),
        (Method::POST, "/deconnexion", Page(P::OwnAccount), routing::post(logout), Doc::form("Sign out")),
    ]
}
