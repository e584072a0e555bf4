//! Sign-in with a password, then (ops, admin, auditor) a TOTP code or a recovery code, or the
//! second factor's enrolment; server-side sessions, sign-out, and the stylesheet.

use axum::Form;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use repli_app::accounts::{self, OpenedSession, SecondFactorRefusal, SignInRefusal, SignedIn, random_hex, same_secret};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::http::auth::{Authed, SESSION_COOKIE};
use crate::web::view::{CsrfForm, Layout, NoFields, page};
use crate::web::{ClientAddr, LOGIN_CSRF_COOKIE, SECOND_FACTOR_COOKIE, error_page};

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
    let next = match accounts::sign_in(&st, &login, &f.password, &addr).await {
        Ok(Ok(next)) => next,
        Ok(Err(SignInRefusal::Throttled)) => {
            return throttled(login_page(&st, jar, StatusCode::TOO_MANY_REQUESTS, &login, Some(THROTTLED)));
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
    let (ticket, to) = match next {
        SignedIn::Session(session) => return signed_in(&st, jar, session, None),
        SignedIn::Code { ticket } => (ticket, "/connexion/code"),
        SignedIn::Enrol { ticket } => (ticket, "/connexion/enrolement"),
    };
    let cookie = Cookie::build((SECOND_FACTOR_COOKIE, ticket))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(st.secure_cookies)
        .path("/connexion");
    (jar.add(cookie), Redirect::to(to)).into_response()
}

const THROTTLED: &str = "Trop de tentatives : réessayez dans 15 minutes ou appelez l'astreinte de la métropole.";

fn throttled(mut r: Response) -> Response {
    r.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from_static("900"));
    r
}

/// The session cookie set, the sign-in's cookies removed; then the home page, or `page` (the
/// recovery codes shown once after an enrolment).
fn signed_in(st: &AppState, jar: CookieJar, session: OpenedSession, page: Option<Response>) -> Response {
    let cookie = Cookie::build((SESSION_COOKIE, session.sid))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(st.secure_cookies)
        .path("/");
    let jar = jar
        .remove(Cookie::build(LOGIN_CSRF_COOKIE).path("/connexion"))
        .remove(Cookie::build(SECOND_FACTOR_COOKIE).path("/connexion"))
        .add(cookie);
    match page {
        Some(p) => (jar, p).into_response(),
        None => (jar, Redirect::to("/")).into_response(),
    }
}

/// The second-factor pages' model.
#[derive(Debug, Serialize)]
struct CodePage<'a> {
    login: &'a str,
    error: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct EnrolPage<'a> {
    login: &'a str,
    error: Option<&'a str>,
    /// The otpauth:// QR code, inline SVG drawn by the server (no markup from input).
    qr_svg: &'a str,
    secret: &'a str,
}

#[derive(Debug, Serialize)]
struct RecoveryCodesPage<'a> {
    codes: &'a [String],
}

/// A page of the sign-in after the password, with a fresh double-submit token.
fn factor_page<T: Serialize>(
    st: &AppState,
    jar: CookieJar,
    status: StatusCode,
    template: &str,
    title: &str,
    body: &T,
) -> Response {
    let Ok(csrf) = random_hex() else {
        return error_page(st, StatusCode::INTERNAL_SERVER_ERROR, "Erreur", "Erreur interne.");
    };
    let cookie = Cookie::build((LOGIN_CSRF_COOKIE, csrf.clone()))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(st.secure_cookies)
        .path("/connexion");
    let layout = Layout { csrf, ..Layout::public(title) };
    (jar.add(cookie), page(st, status, template, &layout, body)).into_response()
}

fn ticket_of(jar: &CookieJar) -> String {
    jar.get(SECOND_FACTOR_COOKIE).map(|c| c.value().to_owned()).unwrap_or_default()
}

/// Back to the sign-in form: the ticket is unknown or expired (the person types their
/// password again).
fn start_again(_: &AppState, jar: CookieJar) -> Response {
    (jar.remove(Cookie::build(SECOND_FACTOR_COOKIE).path("/connexion")), Redirect::to("/connexion")).into_response()
}

fn code_page(st: &AppState, jar: CookieJar, status: StatusCode, error: Option<&str>) -> Response {
    let Some(login) = accounts::code_ticket_login(st, &ticket_of(&jar)) else {
        return start_again(st, jar);
    };
    factor_page(st, jar, status, "connexion-code", "Code de vérification", &CodePage { login: &login, error })
}

pub async fn show_code(State(st): State<AppState>, jar: CookieJar) -> Response {
    code_page(&st, jar, StatusCode::OK, None)
}

fn enrol_page(st: &AppState, jar: CookieJar, status: StatusCode, error: Option<&str>) -> Response {
    match accounts::enrolment(st, &ticket_of(&jar)) {
        Ok(Some(e)) => {
            let body = EnrolPage { login: &e.login, error, qr_svg: &e.qr_svg, secret: &e.secret };
            factor_page(st, jar, status, "connexion-enrolement", "Activer la double authentification", &body)
        }
        Ok(None) => start_again(st, jar),
        Err(e) => {
            tracing::error!(error = %e, "enrolment page failed");
            error_page(st, StatusCode::INTERNAL_SERVER_ERROR, "Erreur", "Erreur interne.")
        }
    }
}

pub async fn show_enrol(State(st): State<AppState>, jar: CookieJar) -> Response {
    enrol_page(&st, jar, StatusCode::OK, None)
}

/// A code typed after the password (the token is the double-submit cookie's).
#[derive(Debug, Deserialize)]
pub struct CodeForm {
    code: String,
    csrf: String,
}

fn form_ok(jar: &CookieJar, csrf: &str) -> bool {
    let expected = jar.get(LOGIN_CSRF_COOKIE).map(|c| c.value().to_owned()).unwrap_or_default();
    !expected.is_empty() && same_secret(&expected, csrf)
}

/// The French message of a refused second factor, and its status.
fn refusal(why: SecondFactorRefusal) -> (StatusCode, &'static str) {
    match why {
        SecondFactorRefusal::Throttled => (StatusCode::TOO_MANY_REQUESTS, THROTTLED),
        SecondFactorRefusal::Wrong | SecondFactorRefusal::Expired => {
            (StatusCode::UNAUTHORIZED, "Code incorrect : saisissez le code affiché maintenant par l'application.")
        }
        SecondFactorRefusal::Replayed => (
            StatusCode::UNAUTHORIZED,
            "Ce code a déjà servi : attendez le suivant (30 secondes au plus) et saisissez-le.",
        ),
        SecondFactorRefusal::Unreadable => (
            StatusCode::UNAUTHORIZED,
            "Votre double authentification ne peut plus être vérifiée sur ce serveur : utilisez un code de secours, ou demandez à un administrateur de la réinitialiser.",
        ),
    }
}

pub async fn code(
    State(st): State<AppState>,
    ClientAddr(addr): ClientAddr,
    jar: CookieJar,
    Form(f): Form<CodeForm>,
) -> Response {
    if !form_ok(&jar, &f.csrf) {
        return code_page(&st, jar, StatusCode::BAD_REQUEST, Some("Formulaire expiré : veuillez réessayer."));
    }
    let code: String = f.code.chars().take(64).collect();
    match accounts::prove_second_factor(&st, &ticket_of(&jar), &code, &addr).await {
        Ok(Ok(session)) => signed_in(&st, jar, session, None),
        Ok(Err(SecondFactorRefusal::Expired)) => start_again(&st, jar),
        Ok(Err(why)) => {
            let (status, message) = refusal(why);
            let r = code_page(&st, jar, status, Some(message));
            if why == SecondFactorRefusal::Throttled { throttled(r) } else { r }
        }
        Err(e) => {
            tracing::error!(error = %e, "second factor failed");
            error_page(&st, StatusCode::INTERNAL_SERVER_ERROR, "Erreur", "Erreur interne.")
        }
    }
}

pub async fn enrol(
    State(st): State<AppState>,
    ClientAddr(addr): ClientAddr,
    jar: CookieJar,
    Form(f): Form<CodeForm>,
) -> Response {
    if !form_ok(&jar, &f.csrf) {
        return enrol_page(&st, jar, StatusCode::BAD_REQUEST, Some("Formulaire expiré : veuillez réessayer."));
    }
    let code: String = f.code.chars().take(64).collect();
    match accounts::confirm_enrolment(&st, &ticket_of(&jar), &code, &addr).await {
        Ok(Ok((session, codes))) => {
            let layout = Layout::public("Vos codes de secours");
            let shown = page(&st, StatusCode::OK, "codes-secours", &layout, &RecoveryCodesPage { codes: &codes });
            signed_in(&st, jar, session, Some(shown))
        }
        Ok(Err(SecondFactorRefusal::Expired)) => start_again(&st, jar),
        Ok(Err(why)) => {
            let (status, message) = refusal(why);
            let r = enrol_page(&st, jar, status, Some(message));
            if why == SecondFactorRefusal::Throttled { throttled(r) } else { r }
        }
        Err(e) => {
            tracing::error!(error = %e, "enrolment failed");
            error_page(&st, StatusCode::INTERNAL_SERVER_ERROR, "Erreur", "Erreur interne.")
        }
    }
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
        (
            Method::GET,
            "/connexion/code",
            Public,
            routing::get(show_code),
            Doc::page("Second factor: the TOTP or recovery code asked after the password"),
        ),
        (
            Method::POST,
            "/connexion/code",
            Public,
            routing::post(code),
            Doc::form("Prove the second factor (TOTP code or recovery code) and open the session"),
        ),
        (
            Method::GET,
            "/connexion/enrolement",
            Public,
            routing::get(show_enrol),
            Doc::page("Second factor enrolment: the QR code to scan"),
        ),
        (
            Method::POST,
            "/connexion/enrolement",
            Public,
            routing::post(enrol),
            Doc::form("Confirm the enrolment with a first code; answers the recovery codes, shown once"),
        ),
        (Method::POST, "/deconnexion", Page(P::OwnAccount), routing::post(logout), Doc::form("Sign out")),
    ]
}
