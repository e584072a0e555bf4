//! Typed page models and typed forms. Every page is a [`Layout`] (what the layout template
//! reads: title, menu, CSRF token, exercise banner, messages) and the page's own struct,
//! flattened beside it into the one object the strict template renders; a field the template
//! reads and the struct lacks is a rendering error in the tests, not an empty string in
//! production. A form posted from a page arrives as [`CsrfForm<T>`]: its CSRF token is checked
//! once, in the extractor, and the fields are deserialized into `T`.

use std::collections::BTreeMap;

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::Response;
use repli_core::{Actor, ExerciseTag, Role};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::web::flash::Flashes;
use crate::web::{SessionCsrf, error_page, render, role_fr};

/// The menu of a signed-in person.
#[derive(Debug, Clone, Serialize)]
pub struct Nav {
    pub name: String,
    pub role: &'static str,
    pub ops: bool,
    pub dgs: bool,
    pub auditor: bool,
    pub admin: bool,
    /// The sign-out form's CSRF token.
    pub csrf: String,
}

/// What the layout template reads, on every page.
#[derive(Debug, Clone, Serialize)]
pub struct Layout {
    pub title: String,
    /// None on public pages (sign-in, password link, errors before sign-in).
    pub nav: Option<Nav>,
    /// The session's CSRF token, for the page's forms.
    pub csrf: String,
    /// « EXERCICE — … »: the banner of an exercise's pages.
    pub exercice: Option<String>,
    /// The message after a form and the error, held by the server (`web::flash`).
    pub flash: Option<String>,
    pub flash_error: Option<String>,
}

impl Layout {
    /// The layout of a signed-in person's page.
    pub fn signed_in(a: &Actor, csrf: &str, title: impl Into<String>) -> Self {
        Layout {
            title: title.into(),
            nav: Some(Nav {
                name: a.name.clone(),
                role: role_fr(a.role),
                ops: a.role == Role::Ops,
                dgs: a.role == Role::Dgs,
                auditor: a.role == Role::Auditor,
                admin: a.role == Role::Admin,
                csrf: csrf.to_owned(),
            }),
            csrf: csrf.to_owned(),
            exercice: None,
            flash: None,
            flash_error: None,
        }
    }

    /// The layout of a public page (sign-in, password link, accessibility): no menu, no
    /// session, hence no session token.
    pub fn public(title: impl Into<String>) -> Self {
        Layout { title: title.into(), nav: None, csrf: String::new(), exercice: None, flash: None, flash_error: None }
    }

    /// The banner of an exercise's pages (none for a real crisis).
    pub fn exercise(mut self, tag: Option<&ExerciseTag>) -> Self {
        self.exercice = tag.map(ExerciseTag::banner);
        self
    }

    /// The messages a page shows after a form, taken from the server ([`Flashes`]); never
    /// text from the URL.
    pub fn flashes(mut self, f: &Flashes) -> Self {
        self.flash = f.done();
        self.flash_error = f.refused();
        self
    }
}

#[derive(Serialize)]
struct Page<'a, T: Serialize> {
    #[serde(flatten)]
    layout: &'a Layout,
    #[serde(flatten)]
    body: &'a T,
}

/// Renders `template` with the layout and the page's own model.
pub fn page<T: Serialize>(st: &AppState, status: StatusCode, template: &str, layout: &Layout, body: &T) -> Response {
    match serde_json::to_value(Page { layout, body }) {
        Ok(data) => render(st, status, template, &data),
        Err(e) => {
            tracing::error!(error = %e, template, "page model does not serialize");
            error_page(st, StatusCode::INTERNAL_SERVER_ERROR, "Erreur", "Erreur interne.")
        }
    }
}

/// A form posted from one of Repli's pages, its CSRF token checked against the session's once,
/// here: a handler that takes a `CsrfForm<T>` never runs for a forged or expired form. The
/// fields are deserialized into `T` (unknown fields, the token included, are ignored); a form
/// that does not deserialize is a French error page, never a serde message.
#[derive(Debug, Clone)]
pub struct CsrfForm<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, st: &AppState) -> Result<Self, Response> {
        let expected = req.extensions().get::<SessionCsrf>().map(|c| c.0.clone());
        let refused = |st: &AppState| {
            error_page(
                st,
                StatusCode::FORBIDDEN,
                "Action refusée",
                "Formulaire expiré ou jeton invalide : rechargez la page.",
            )
        };
        let axum::Form(fields) = axum::Form::<BTreeMap<String, String>>::from_request(req, st).await.map_err(|e| {
            tracing::info!(error = %e, "unreadable form");
            error_page(
                st,
                StatusCode::BAD_REQUEST,
                "Formulaire illisible",
                "Le formulaire envoyé est illisible : rechargez la page.",
            )
        })?;
        let Some(expected) = expected else { return Err(refused(st)) };
        if !fields.get("csrf").is_some_and(|c| repli_app::accounts::same_secret(&expected, c)) {
            return Err(refused(st));
        }
        let de = serde::de::value::MapDeserializer::<_, serde::de::value::Error>::new(fields.into_iter());
        T::deserialize(de).map(CsrfForm).map_err(|e| {
            tracing::info!(error = %e, "form fields do not match the page's form");
            error_page(
                st,
                StatusCode::BAD_REQUEST,
                "Formulaire invalide",
                "Le formulaire envoyé ne correspond pas à la page : rechargez-la.",
            )
        })
    }
}

/// The form of a page whose only field is its token (a button).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct NoFields {}

/// Renders a page model through the real (strict) templates, as [`page`] does, without a
/// running daemon: a key the template reads and the model lacks fails the test.
#[cfg(test)]
pub(crate) fn render_model<T: Serialize>(template: &str, layout: &Layout, body: &T) -> Result<String, String> {
    let mut data = serde_json::to_value(Page { layout, body }).map_err(|e| e.to_string())?;
    if let Some(obj) = data.as_object_mut() {
        obj.insert("a_configurer".into(), serde_json::Value::Null);
        obj.insert("simulation".into(), serde_json::Value::Null);
        obj.insert("pied_astreinte".into(), serde_json::Value::Null);
    }
    let h = crate::web::templates().map_err(|e| e.to_string())?;
    h.render(template, &data).map_err(|e| e.to_string())
}

/// An ops person's layout, for the page models' tests.
#[cfg(test)]
pub(crate) fn test_layout(title: &str) -> Layout {
    let a = Actor {
        user_id: 1,
        name: "Opé Test".into(),
        role: Role::Ops,
        commune: None,
        auth: repli_core::AuthMethod::Password,
    };
    Layout::signed_in(&a, "jeton", title)
}
