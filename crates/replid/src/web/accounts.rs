//! Account administration in the browser (admins): the users, a new account (a DGS bound to
//! their commune), a one-time link by which a person chooses their own web password, and the
//! revocation of every token and session of an account. The link's page itself is public: the
//! link's secret is the credential, it works once and expires.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use repli_core::{Actor, FieldError, InseeCode, Role};
use repli_proto::api::NewUserRequest;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::http::auth::Authed;
use crate::web::flash::{Flash, Flashes};
use crate::web::view::{CsrfForm, Layout, page as render_page};
use crate::web::{SessionCsrf, api_error_page, error_page, role_fr, when};
use repli_app::AppError;
use repli_app::accounts::{self, LinkUse};

/// An account of the list.
#[derive(Debug, Serialize)]
struct UserLine {
    id: i64,
    name: String,
    role: &'static str,
    /// « Marseille (13055) » for a DGS.
    commune: Option<String>,
    login: Option<String>,
    has_password: bool,
    /// Active API tokens and sessions.
    tokens: i64,
    /// A TOTP second factor is enrolled (the reset button shows).
    second_factor: bool,
    /// The signed-in admin's own account (no revocation button).
    me: bool,
    /// The login the password link's field suggests.
    suggested: String,
}

/// A role of the creation form's list.
#[derive(Debug, Serialize)]
struct RoleChoice {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

/// A commune of the creation form's list.
#[derive(Debug, Serialize)]
struct CommuneChoice {
    insee: String,
    name: String,
    selected: bool,
}

/// The name typed in the creation form.
#[derive(Debug, Serialize)]
struct Values {
    name: String,
}

/// The creation form's errors, beside their fields.
#[derive(Debug, Default, Serialize)]
struct CreationErrors {
    name: Option<String>,
    role: Option<String>,
    commune: Option<String>,
}

#[derive(Debug, Serialize)]
struct AccountsPage {
    users: Vec<UserLine>,
    roles: Vec<RoleChoice>,
    communes: Vec<CommuneChoice>,
    v: Values,
    e: CreationErrors,
}

/// The creation form.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct NewAccountForm {
    name: String,
    /// A role's code (`dgs`, `ops`…).
    role: String,
    /// A DGS's commune (INSEE code).
    commune: String,
}

/// The accounts page: every user, and the form to create one.
pub async fn page(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    flashes: Flashes,
) -> Response {
    let layout = Layout::signed_in(&a, &csrf, "Comptes").flashes(&flashes);
    accounts_page(&st, &a, &layout, StatusCode::OK, &NewAccountForm::default(), CreationErrors::default()).await
}

/// The page, with the creation form as typed and its errors.
async fn accounts_page(
    st: &AppState,
    a: &Actor,
    layout: &Layout,
    status: StatusCode,
    typed: &NewAccountForm,
    errors: CreationErrors,
) -> Response {
    let (list, communes) = match (accounts::list(st).await, repli_app::crises::communes(st, a).await) {
        (Ok(l), Ok(c)) => (l, c),
        (Err(e), _) | (_, Err(e)) => return api_error_page(st, &e),
    };
    let users = list
        .iter()
        .map(|u| UserLine {
            id: u.id,
            name: u.name.clone(),
            role: role_fr(u.role),
            commune: u.commune.as_ref().map(|c| {
                communes.iter().find(|r| r.insee == *c).map_or_else(|| c.to_string(), |r| format!("{} ({c})", r.name))
            }),
            login: u.login.clone(),
            has_password: u.has_password,
            tokens: u.active_tokens,
            second_factor: u.second_factor,
            me: u.id == a.user_id,
            suggested: u.login.clone().unwrap_or_else(|| accounts::suggested_login(&u.name)),
        })
        .collect();
    let body = AccountsPage {
        users,
        roles: [Role::Dgs, Role::Ops, Role::Auditor, Role::Admin]
            .into_iter()
            .map(|r| RoleChoice { value: r.as_str(), label: role_fr(r), selected: typed.role == r.as_str() })
            .collect(),
        communes: communes
            .iter()
            .map(|c| CommuneChoice {
                insee: c.insee.to_string(),
                name: c.name.clone(),
                selected: typed.commune == c.insee.as_str(),
            })
            .collect(),
        v: Values { name: typed.name.clone() },
        e: errors,
    };
    render_page(st, status, "comptes", layout, &body)
}

/// The account just created, and its API token shown once.
#[derive(Debug, Serialize)]
struct Created {
    id: i64,
    name: String,
    token: String,
    /// The login the password link's field suggests.
    suggested: String,
}

#[derive(Debug, Serialize)]
struct CreatedPage {
    u: Created,
}

/// Creates an account; the API token it comes with is shown once (for the CLI), and the page
/// offers the password link next.
pub async fn create(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    CsrfForm(form): CsrfForm<NewAccountForm>,
) -> Response {
    let layout = Layout::signed_in(&a, &csrf, "Comptes");
    let mut errors = CreationErrors::default();
    let role = match Role::ALL.into_iter().find(|r| r.as_str() == form.role.trim()) {
        Some(r) => Some(r),
        None => {
            errors.role = Some("choisissez un rôle".into());
            None
        }
    };
    let commune = match (role, form.commune.trim()) {
        (Some(Role::Dgs), "") => {
            errors.commune = Some("un DGS est rattaché à sa commune : choisissez-la".into());
            None
        }
        (Some(Role::Dgs), c) => match InseeCode::parse(c) {
            Ok(c) => Some(c),
            Err(_) => {
                errors.commune = Some("commune inconnue".into());
                None
            }
        },
        _ => None,
    };
    let Some(role) = role.filter(|_| errors.commune.is_none()) else {
        return accounts_page(&st, &a, &layout, StatusCode::UNPROCESSABLE_ENTITY, &form, errors).await;
    };
    let req = NewUserRequest { name: form.name.trim().to_owned(), role, commune, expires_days: None };
    match accounts::create(&st, repli_app::By::User(&a), &req).await {
        Ok(created) => {
            let u = Created {
                id: created.user.id,
                suggested: accounts::suggested_login(&created.user.name),
                name: created.user.name,
                token: created.token.token,
            };
            let layout = Layout::signed_in(&a, &csrf, "Compte créé");
            render_page(&st, StatusCode::CREATED, "compte-cree", &layout, &CreatedPage { u })
        }
        Err(AppError::Validation(found)) => {
            for FieldError { field, message } in found {
                match field.as_str() {
                    "name" => errors.name = Some(message),
                    "role" => errors.role = Some(message),
                    "commune" => errors.commune = Some(message),
                    _ => {}
                }
            }
            accounts_page(&st, &a, &layout, StatusCode::UNPROCESSABLE_ENTITY, &form, errors).await
        }
        Err(e) => {
            let mut layout = layout;
            layout.flash_error = Some(e.to_problem().detail);
            accounts_page(&st, &a, &layout, StatusCode::UNPROCESSABLE_ENTITY, &form, errors).await
        }
    }
}

/// The password link form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LinkForm {
    /// The login the person will sign in with.
    login: String,
}

/// The link just created, shown once.
#[derive(Debug, Serialize)]
struct Link {
    url: String,
    login: String,
    expires: String,
    /// How long a link lasts.
    hours: i64,
}

#[derive(Debug, Serialize)]
struct LinkPage {
    l: Link,
}

/// A one-time link for the person to choose their web password, shown once to the admin.
pub async fn link(
    State(st): State<AppState>,
    Authed(a): Authed,
    Extension(SessionCsrf(csrf)): Extension<SessionCsrf>,
    Path(uid): Path<String>,
    headers: HeaderMap,
    CsrfForm(form): CsrfForm<LinkForm>,
) -> Response {
    let Ok(uid) = uid.parse::<i64>() else { return unknown_user(&st) };
    let login = form.login.trim().to_owned();
    match accounts::password_link(&st, &a, uid, &login).await {
        Ok((secret, expires)) => {
            let site = match st.config.server.public_url.as_deref() {
                Some(u) => u.trim_end_matches('/').to_owned(),
                None => {
                    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
                    format!("{}://{host}", if st.secure_cookies { "https" } else { "http" })
                }
            };
            let l = Link {
                url: format!("{site}/mot-de-passe/{secret}"),
                login,
                expires: when(&st, Some(expires)),
                hours: accounts::LINK_HOURS,
            };
            let layout = Layout::signed_in(&a, &csrf, "Lien de mot de passe");
            render_page(&st, StatusCode::OK, "lien", &layout, &LinkPage { l })
        }
        Err(e) => back(Flash::error(format!("Lien non créé : {}", e.to_problem().detail))),
    }
}

/// The revocation form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RevokeForm {
    /// `oui` when the box is ticked.
    confirme: String,
}

/// Revokes every token and session of an account, once the box saying so is ticked.
pub async fn revoke(
    State(st): State<AppState>,
    Authed(a): Authed,
    Path(uid): Path<String>,
    CsrfForm(form): CsrfForm<RevokeForm>,
) -> Response {
    let Ok(uid) = uid.parse::<i64>() else { return unknown_user(&st) };
    if form.confirme != "oui" {
        return back(Flash::error(
            "Cochez la case : la révocation coupe tout accès de ce compte (jetons et sessions).",
        ));
    }
    if uid == a.user_id {
        return back(Flash::error("Vous ne pouvez pas révoquer votre propre accès depuis cette page."));
    }
    match accounts::revoke(&st, &a, uid).await {
        Ok(n) => back(Flash::ok(format!("Accès révoqué : {n} jeton(s) ou session(s) fermé(s)."))),
        Err(e) => back(Flash::error(e.to_problem().detail)),
    }
}

/// Removes an account's second factor (a lost phone), once the box saying so is ticked: the
/// person enrols again at their next sign-in.
pub async fn reset_second_factor(
    State(st): State<AppState>,
    Authed(a): Authed,
    Path(uid): Path<String>,
    CsrfForm(form): CsrfForm<RevokeForm>,
) -> Response {
    let Ok(uid) = uid.parse::<i64>() else { return unknown_user(&st) };
    if form.confirme != "oui" {
        return back(Flash::error(
            "Cochez la case : la réinitialisation oblige la personne à réactiver sa double authentification.",
        ));
    }
    match accounts::reset_second_factor(&st, &a, uid).await {
        Ok(true) => back(Flash::ok(
            "Double authentification réinitialisée : la personne la réactivera à sa prochaine connexion.",
        )),
        Ok(false) => back(Flash::error("Ce compte n'a pas de double authentification active.")),
        Err(e) => back(Flash::error(e.to_problem().detail)),
    }
}

fn back(message: Flash) -> Response {
    crate::web::redirect_with("/comptes", message)
}

fn unknown_user(st: &AppState) -> Response {
    error_page(st, StatusCode::NOT_FOUND, "Introuvable", "Compte inconnu.")
}

/// The password form's errors, beside their fields.
#[derive(Debug, Default, Serialize)]
struct PasswordErrors {
    password: Option<String>,
    confirmation: Option<String>,
}

/// The page a password link opens (public), and the page once the password is set (`done`).
#[derive(Debug, Serialize)]
struct PasswordPage {
    done: bool,
    /// The link's holder (empty once done).
    name: String,
    login: String,
    /// The shortest password accepted.
    min: usize,
    e: PasswordErrors,
}

/// The page a password link opens (public): who it is for, and the form.
pub async fn choose_form(State(st): State<AppState>, Path(secret): Path<String>) -> Response {
    choose_page(&st, &secret, StatusCode::OK, PasswordErrors::default()).await
}

async fn choose_page(st: &AppState, secret: &str, status: StatusCode, errors: PasswordErrors) -> Response {
    let found = match accounts::link_holder(st, secret).await {
        Ok(f) => f,
        Err(e) => return api_error_page(st, &e),
    };
    let Some((who, login)) = found else { return spent(st) };
    let body = PasswordPage { done: false, name: who.name, login, min: accounts::PASSWORD_MIN, e: errors };
    render_page(st, status, "mot-de-passe", &Layout::public("Choisir votre mot de passe"), &body)
}

fn spent(st: &AppState) -> Response {
    error_page(
        st,
        StatusCode::NOT_FOUND,
        "Lien inutilisable",
        "Ce lien a déjà servi ou a expiré. Demandez-en un nouveau à l'administrateur de Repli (astreinte de la métropole).",
    )
}

/// The password form (public: the link's secret is the credential, no session, no token).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PasswordForm {
    password: String,
    confirmation: String,
}

/// Sets the password the link's holder chose; the link is then spent.
pub async fn choose(
    State(st): State<AppState>,
    Path(secret): Path<String>,
    axum::Form(form): axum::Form<PasswordForm>,
) -> Response {
    match accounts::use_link(&st, &secret, &form.password, &form.confirmation).await {
        Ok(LinkUse::Set { login }) => {
            let body = PasswordPage {
                done: true,
                name: String::new(),
                login,
                min: accounts::PASSWORD_MIN,
                e: PasswordErrors::default(),
            };
            render_page(&st, StatusCode::OK, "mot-de-passe", &Layout::public("Mot de passe enregistré"), &body)
        }
        Ok(LinkUse::Spent) => spent(&st),
        Ok(LinkUse::LoginTaken) => error_page(
            &st,
            StatusCode::CONFLICT,
            "Identifiant déjà pris",
            "Cet identifiant a été donné à un autre compte entre-temps. Demandez un nouveau lien à l'administrateur.",
        ),
        Err(AppError::Validation(found)) => {
            let mut errors = PasswordErrors::default();
            for FieldError { field, message } in found {
                match field.as_str() {
                    "password" => errors.password = Some(message),
                    "confirmation" => errors.confirmation = Some(message),
                    _ => {}
                }
            }
            choose_page(&st, &secret, StatusCode::UNPROCESSABLE_ENTITY, errors).await
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
            "/comptes/{uid}/double-authentification",
            Page(P::ManageUsers),
            routing::post(reset_second_factor),
            Doc::form("Reset an account's second factor (lost phone; a ticked confirmation)"),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A public page's model through the real strict template, as `view::page` renders it.
    fn rendered(title: &str, body: &PasswordPage) -> String {
        let mut data = serde_json::to_value(Layout::public(title)).unwrap();
        data.as_object_mut().unwrap().extend(serde_json::to_value(body).unwrap().as_object().unwrap().clone());
        data["a_configurer"] = serde_json::Value::Null;
        data["simulation"] = serde_json::Value::Null;
        crate::web::templates().unwrap().render("mot-de-passe", &data).unwrap()
    }

    #[test]
    fn the_password_link_page_is_public_and_shows_its_errors() {
        let errors = PasswordErrors { password: Some("trop court".into()), confirmation: None };
        let body = PasswordPage { done: false, name: "Anne".into(), login: "anne".into(), min: 12, e: errors };
        let html = rendered("Choisir votre mot de passe", &body);
        assert!(html.contains("Bonjour Anne") && html.contains(r#"minlength="12""#), "{html}");
        assert!(html.contains(r#"<p id="password-erreur" class="erreur">trop court</p>"#));
        assert!(!html.contains("Se déconnecter"), "no menu without a session");
        let done =
            PasswordPage { done: true, name: String::new(), login: "anne".into(), min: 12, e: Default::default() };
        assert!(rendered("Mot de passe enregistré", &done).contains("<strong>anne</strong>"));
    }
}
