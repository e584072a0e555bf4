//! Account administration in the browser (admins): the users, a new account (a DGS bound to
//! their commune), a one-time link by which a person chooses their own web password, and the
//! revocation of every token and session of an account. The link's page itself is public: the
//! link's secret is the credential, it works once and expires.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use repli_core::{Actor, FieldError, InseeCode, Role};
use repli_proto::api::NewUserRequest;
use serde_json::{Value, json};

use crate::AppState;
use crate::http::auth::Authed;
use crate::web::{Form, SessionCsrf, api_error_page, base, check_csrf, error_page, render, role_fr, when};
use repli_app::AppError;
use repli_app::accounts::{self, LinkUse};

/// The accounts page: every user, and the form to create one.
pub async fn page(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    accounts_page(&st, &a, &csrf, StatusCode::OK, q.get("ok").cloned(), q.get("erreur").cloned(), None).await
}

/// What was typed in the creation form, and the errors beside its fields.
#[derive(Default)]
struct Typed {
    values: BTreeMap<String, String>,
    errors: BTreeMap<String, String>,
}

async fn accounts_page(
    st: &AppState,
    a: &Actor,
    csrf: &str,
    status: StatusCode,
    flash: Option<String>,
    flash_error: Option<String>,
    typed: Option<Typed>,
) -> Response {
    let (list, communes) = match (accounts::list(st).await, repli_app::crises::communes(st, a).await) {
        (Ok(l), Ok(c)) => (l, c),
        (Err(e), _) | (_, Err(e)) => return api_error_page(st, &e),
    };
    let typed = typed.unwrap_or_default();
    let value = |k: &str| typed.values.get(k).cloned().unwrap_or_default();
    let rows: Vec<Value> = list
        .iter()
        .map(|u| {
            let commune = u.commune.as_ref().map(|c| {
                communes.iter().find(|r| r.insee == *c).map_or_else(|| c.to_string(), |r| format!("{} ({c})", r.name))
            });
            json!({
                "id": u.id, "name": u.name, "role": role_fr(u.role), "commune": commune,
                "login": u.login, "has_password": u.has_password, "tokens": u.active_tokens,
                "created": when(st, u.created_at), "me": u.id == a.user_id,
                "suggested": u.login.clone().unwrap_or_else(|| accounts::suggested_login(&u.name)),
            })
        })
        .collect();
    let selected = value("commune");
    let mut data = base(a, csrf, "Comptes");
    data.insert("users".into(), json!(rows));
    data.insert(
        "communes".into(),
        json!(
            communes
                .iter()
                .map(|c| json!({ "insee": c.insee.as_str(), "name": c.name, "selected": selected == c.insee.as_str() }))
                .collect::<Vec<_>>()
        ),
    );
    data.insert(
        "roles".into(),
        json!(
            [Role::Dgs, Role::Ops, Role::Auditor, Role::Admin]
                .iter()
                .map(|r| json!({ "value": r.as_str(), "label": role_fr(*r), "selected": value("role") == r.as_str() }))
                .collect::<Vec<_>>()
        ),
    );
    data.insert("v".into(), json!({ "name": value("name") }));
    data.insert(
        "e".into(),
        json!({ "name": typed.errors.get("name"), "role": typed.errors.get("role"), "commune": typed.errors.get("commune") }),
    );
    data.insert("flash".into(), json!(flash));
    data.insert("flash_error".into(), json!(flash_error));
    render(st, status, "comptes", &Value::Object(data))
}

/// Creates an account; the API token it comes with is shown once (for the CLI), and the page
/// offers the password link next.
pub async fn create(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    axum::Form(form): Form,
) -> Response {
    if let Err(page) = check_csrf(&st, &csrf, &form) {
        return *page;
    }
    let get = |k: &str| form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let mut typed = Typed { values: form.clone(), errors: BTreeMap::new() };
    let role = match Role::ALL.into_iter().find(|r| r.as_str() == get("role")) {
        Some(r) => Some(r),
        None => {
            typed.errors.insert("role".into(), "choisissez un rôle".into());
            None
        }
    };
    let commune = match (role, get("commune").as_str()) {
        (Some(Role::Dgs), "") => {
            typed.errors.insert("commune".into(), "un DGS est rattaché à sa commune : choisissez-la".into());
            None
        }
        (Some(Role::Dgs), c) => match InseeCode::parse(c) {
            Ok(c) => Some(c),
            Err(_) => {
                typed.errors.insert("commune".into(), "commune inconnue".into());
                None
            }
        },
        _ => None,
    };
    let Some(role) = role.filter(|_| typed.errors.is_empty()) else {
        return accounts_page(&st, &a, &csrf, StatusCode::UNPROCESSABLE_ENTITY, None, None, Some(typed)).await;
    };
    let req = NewUserRequest { name: get("name"), role, commune, expires_days: None };
    match accounts::create(&st, repli_app::By::User(&a), &req).await {
        Ok(created) => {
            let mut data = base(&a, &csrf, "Compte créé");
            data.insert(
                "u".into(),
                json!({
                    "id": created.user.id, "name": created.user.name, "role": role_fr(created.user.role),
                    "token": created.token.token, "suggested": accounts::suggested_login(&created.user.name),
                }),
            );
            render(&st, StatusCode::CREATED, "compte-cree", &Value::Object(data))
        }
        Err(AppError::Validation(errors)) => {
            for FieldError { field, message } in errors {
                typed.errors.insert(field, message);
            }
            accounts_page(&st, &a, &csrf, StatusCode::UNPROCESSABLE_ENTITY, None, None, Some(typed)).await
        }
        Err(e) => {
            accounts_page(
                &st,
                &a,
                &csrf,
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
                Some(e.to_problem().detail),
                Some(typed),
            )
            .await
        }
    }
}

/// A one-time link for the person to choose their web password, shown once to the admin.
pub async fn link(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(uid): Path<String>,
    headers: HeaderMap,
    axum::Form(form): Form,
) -> Response {
    if let Err(page) = check_csrf(&st, &csrf, &form) {
        return *page;
    }
    let Ok(uid) = uid.parse::<i64>() else { return unknown_user(&st) };
    let login = form.get("login").map(|l| l.trim().to_owned()).unwrap_or_default();
    match accounts::password_link(&st, &a, uid, &login).await {
        Ok((secret, expires)) => {
            let site = match st.config.server.public_url.as_deref() {
                Some(u) => u.trim_end_matches('/').to_owned(),
                None => {
                    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
                    format!("{}://{host}", if st.secure_cookies { "https" } else { "http" })
                }
            };
            let mut data = base(&a, &csrf, "Lien de mot de passe");
            data.insert(
                "l".into(),
                json!({ "url": format!("{site}/mot-de-passe/{secret}"), "login": login, "expires": when(&st, Some(expires)), "hours": accounts::LINK_HOURS }),
            );
            render(&st, StatusCode::OK, "lien", &Value::Object(data))
        }
        Err(e) => back(&format!("Lien non créé : {}", e.to_problem().detail), "erreur"),
    }
}

/// Revokes every token and session of an account, once the box saying so is ticked.
pub async fn revoke(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(uid): Path<String>,
    axum::Form(form): Form,
) -> Response {
    if let Err(page) = check_csrf(&st, &csrf, &form) {
        return *page;
    }
    let Ok(uid) = uid.parse::<i64>() else { return unknown_user(&st) };
    if form.get("confirme").is_none_or(|v| v != "oui") {
        return back("Cochez la case : la révocation coupe tout accès de ce compte (jetons et sessions).", "erreur");
    }
    if uid == a.user_id {
        return back("Vous ne pouvez pas révoquer votre propre accès depuis cette page.", "erreur");
    }
    match accounts::revoke(&st, &a, uid).await {
        Ok(n) => back(&format!("Accès révoqué : {n} jeton(s) ou session(s) fermé(s)."), "ok"),
        Err(e) => back(&e.to_problem().detail, "erreur"),
    }
}

fn back(message: &str, key: &str) -> Response {
    crate::web::redirect_with("/comptes", key, message)
}

fn unknown_user(st: &AppState) -> Response {
    error_page(st, StatusCode::NOT_FOUND, "Introuvable", "Compte inconnu.")
}

/// The page a password link opens (public): who it is for, and the form.
pub async fn choose_form(State(st): State<AppState>, Path(secret): Path<String>) -> Response {
    choose_page(&st, &secret, StatusCode::OK, &BTreeMap::new()).await
}

async fn choose_page(st: &AppState, secret: &str, status: StatusCode, errors: &BTreeMap<String, String>) -> Response {
    let found = match accounts::link_holder(st, secret).await {
        Ok(f) => f,
        Err(e) => return api_error_page(st, &e),
    };
    let Some((who, login)) = found else { return spent(st) };
    render(
        st,
        status,
        "mot-de-passe",
        &json!({
            "title": "Choisir votre mot de passe", "nav": null, "name": who.name, "login": login,
            "min": accounts::PASSWORD_MIN, "e": { "password": errors.get("password"), "confirmation": errors.get("confirmation") },
            "done": false,
        }),
    )
}

fn spent(st: &AppState) -> Response {
    error_page(
        st,
        StatusCode::NOT_FOUND,
        "Lien inutilisable",
        "Ce lien a déjà servi ou a expiré. Demandez-en un nouveau à l'administrateur de Repli (astreinte de la métropole).",
    )
}

/// Sets the password the link's holder chose; the link is then spent.
pub async fn choose(State(st): State<AppState>, Path(secret): Path<String>, axum::Form(form): Form) -> Response {
    let password = form.get("password").map(String::as_str).unwrap_or_default();
    let confirmation = form.get("confirmation").map(String::as_str).unwrap_or_default();
    match accounts::use_link(&st, &secret, password, confirmation).await {
        Ok(LinkUse::Set { login }) => render(
            &st,
            StatusCode::OK,
            "mot-de-passe",
            &json!({ "title": "Mot de passe enregistré", "nav": null, "done": true, "login": login, "name": "", "min": accounts::PASSWORD_MIN, "e": { "password": null, "confirmation": null } }),
        ),
        Ok(LinkUse::Spent) => spent(&st),
        Ok(LinkUse::LoginTaken) => error_page(
            &st,
            StatusCode::CONFLICT,
            "Identifiant déjà pris",
            "Cet identifiant a été donné à un autre compte entre-temps. Demandez un nouveau lien à l'administrateur.",
        ),
        Err(AppError::Validation(errors)) => {
            let errors: BTreeMap<String, String> = errors.into_iter().map(|e| (e.field, e.message)).collect();
            choose_page(&st, &secret, StatusCode::UNPROCESSABLE_ENTITY, &errors).await
        }
        Err(e) => api_error_page(&st, &e),
    }
}

/// This area's routes, each with its access rule and its documentation (`http::routes`
/// gathers every area's into the one table).
pub(crate) fn routes() -> Vec<crate::http::spec::Route> {
    use crate::http::spec::Access::{Page, Public};
    use crate::http::spec::Doc;
    use axum::http::Method;
    use axum::routing;
    use repli_core::Permission as P;
    vec![
        (
            Method::GET,
            "/mot-de-passe/{secret}",
            Public,
            routing::get(choose_form),
            Doc::page("A one-time password link: the form to choose one's web password"),
        ),
        (
            Method::POST,
            "/mot-de-passe/{secret}",
            Public,
            routing::post(choose),
            Doc::page("Set one's web password through a one-time link (the link is then spent)"),
        ),
        (Method::GET, "/comptes", Page(P::ManageUsers), routing::get(page), Doc::page("Accounts (admins)")),
        (Method::POST, "/comptes", Page(P::ManageUsers), routing::post(create), Doc::page("Create an account")),
        (
            Method::POST,
            "/comptes/{uid}/lien",
            Page(P::ManageUsers),
            routing::post(link),
            Doc::page("Create a one-time link for the person to choose their web password"),
        ),
        (
            Method::POST,
            "/comptes/{uid}/revocation",
            Page(P::ManageUsers),
            routing::post(revoke),
            Doc::form("Revoke every token and session of an account (a ticked confirmation)"),
        ),
    ]
}
