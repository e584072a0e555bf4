//! Sign-in with a password, server-side sessions, sign-out, and the stylesheet.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use jiff::SignedDuration;
use repli_app::metrics::SignInFailure;
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::auth::{self, Authed, SESSION_COOKIE};
use crate::web::{
    ClientAddr, LOGIN_CSRF_COOKIE, SESSION_HOURS, SessionCsrf, error_page, random_hex, render, same_secret,
};

pub async fn stylesheet() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../web/repli.css"))
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
    let page = render(
        st,
        status,
        "connexion",
        &json!({
            "title": "Connexion",
            "csrf": csrf,
            "login": login,
            "error": error,
            "nav": null,
            "astreinte": st.config.documents.astreinte_phone(),
        }),
    );
    (jar.add(cookie), page).into_response()
}

/// The accessibility statement (public: linked from every page's footer).
pub async fn accessibility(State(st): State<AppState>) -> Response {
    render(
        &st,
        StatusCode::OK,
        "accessibilite",
        &json!({ "title": "Accessibilité", "nav": null, "astreinte": st.config.documents.astreinte_phone() }),
    )
}

pub async fn show_login(State(st): State<AppState>, jar: CookieJar) -> Response {
    login_page(&st, jar, StatusCode::OK, "", None)
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    login: String,
    password: String,
    csrf: String,
}

/// A hash to verify against when the login is unknown, so that both paths take as long.
const DUMMY_PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2VsZGUtZmljdGlm$0b4KqXU9q0x3YkVqz4bQ3nZPj4nY2QvLkq1m3f6u3hA";

pub async fn login(
    State(st): State<AppState>,
    ClientAddr(addr): ClientAddr,
    jar: CookieJar,
    Form(f): Form<LoginForm>,
) -> Response {
    let login: String = f.login.trim().chars().take(64).collect();
    let now = st.clock.now();
    let expected = jar.get(LOGIN_CSRF_COOKIE).map(|c| c.value().to_owned()).unwrap_or_default();
    if expected.is_empty() || !same_secret(&expected, &f.csrf) {
        return login_page(&st, jar, StatusCode::BAD_REQUEST, &login, Some("Formulaire expiré : veuillez réessayer."));
    }
    if !st.throttle.reserve(&login, &addr, now) {
        tracing::warn!(login = %login, addr = %addr, "sign-in throttled");
        st.app.services().telemetry.sign_in_failed(SignInFailure::Throttled);
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
    let found = match st.store.password_for_login(&login).await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "sign-in lookup failed");
            return error_page(&st, StatusCode::INTERNAL_SERVER_ERROR, "Erreur", "Erreur interne.");
        }
    };
    let phc = found.as_ref().map_or(DUMMY_PHC.to_owned(), |(_, p)| p.clone());
    let password = f.password;
    // A bounded number of argon2 checks at once (19 MiB each): a burst waits, it does not
    // grow memory without bound.
    let ok = match st.throttle.verifications.acquire().await {
        Ok(_permit) => {
            tokio::task::spawn_blocking(move || auth::verify_password(&password, &phc)).await.unwrap_or(false)
        }
        Err(_) => false,
    };
    let Some((user_id, _)) = found.filter(|_| ok) else {
        // The reserved attempt stays counted as a failure.
        tracing::info!(login = %login, addr = %addr, "sign-in refused");
        st.app.services().telemetry.sign_in_failed(SignInFailure::Password);
        return login_page(&st, jar, StatusCode::UNAUTHORIZED, &login, Some("Identifiant ou mot de passe incorrect."));
    };
    st.throttle.succeeded(&login, &addr, now);
    let (Ok(sid), Ok(csrf)) = (random_hex(), random_hex()) else {
        return error_page(&st, StatusCode::INTERNAL_SERVER_ERROR, "Erreur", "Erreur interne.");
    };
    let expires = now.checked_add(SignedDuration::from_hours(SESSION_HOURS)).unwrap_or(now);
    if let Err(e) = st.store.create_session(user_id, &auth::token_hash(&sid), &csrf, expires, now).await {
        tracing::error!(error = %e, "cannot open a session");
        return error_page(&st, StatusCode::INTERNAL_SERVER_ERROR, "Erreur", "Erreur interne.");
    }
    let cookie = Cookie::build((SESSION_COOKIE, sid))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(st.secure_cookies)
        .path("/");
    let jar = jar.remove(Cookie::build(LOGIN_CSRF_COOKIE).path("/connexion")).add(cookie);
    (jar, Redirect::to("/")).into_response()
}

#[derive(Debug, Deserialize)]
pub struct CsrfOnly {
    csrf: String,
}

pub async fn logout(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(expected)): Extension<SessionCsrf>,
    jar: CookieJar,
    Form(f): Form<CsrfOnly>,
) -> Response {
    if !same_secret(&expected, &f.csrf) {
        return error_page(
            &st,
            StatusCode::FORBIDDEN,
            "Action refusée",
            "Jeton de formulaire invalide : rechargez la page.",
        );
    }
    st.auth_cache.clear();
    if let Some(c) = jar.get(SESSION_COOKIE)
        && let Err(e) = st.store.close_session(&auth::token_hash(c.value()), &a, st.clock.now()).await
    {
        tracing::error!(error = %e, "cannot close the session");
    }
    (jar.remove(Cookie::build(SESSION_COOKIE).path("/")), Redirect::to("/connexion")).into_response()
}
