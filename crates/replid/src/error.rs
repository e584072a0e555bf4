//! One error type for the API, mapped to HTTP and to RFC 7807 problem documents in one place.
//! `detail` is French (a DGS may read it); internal causes are logged, never sent.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use repli_core::{FieldError, TransitionError};
use repli_proto::api::Problem;
use repli_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("authentication required")]
    Unauthenticated,
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("not found: {detail}")]
    NotFound { code: &'static str, detail: String },
    #[error("bad request: {detail}")]
    BadRequest { code: &'static str, detail: String },
    #[error("conflict: {detail}")]
    Conflict { code: &'static str, detail: String },
    #[error("invalid fields")]
    Validation(Vec<FieldError>),
    #[error("payload too large")]
    TooLarge,
    #[error("unsupported media type")]
    MediaType,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn crisis_not_found() -> Self {
        Self::NotFound { code: "crisis_not_found", detail: "Crise introuvable.".into() }
    }
}

fn problem(status: StatusCode, code: &str, detail: String) -> Problem {
    Problem {
        type_: format!("urn:repli:problem:{code}"),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail,
        code: code.to_owned(),
        errors: Vec::new(),
        current_state: None,
        open_crisis: None,
    }
}

impl ApiError {
    pub fn to_problem(&self) -> Problem {
        use StatusCode as S;
        match self {
            Self::Unauthenticated => problem(
                S::UNAUTHORIZED,
                "unauthenticated",
                "Authentification requise : jeton absent, invalide, expiré ou révoqué.".into(),
            ),
            Self::Forbidden(why) => problem(S::FORBIDDEN, "forbidden", (*why).to_owned()),
            Self::NotFound { code, detail } => problem(S::NOT_FOUND, code, detail.clone()),
            Self::BadRequest { code, detail } => problem(S::BAD_REQUEST, code, detail.clone()),
            Self::Conflict { code, detail } => problem(S::CONFLICT, code, detail.clone()),
            Self::Validation(errors) => {
                let mut p = problem(S::UNPROCESSABLE_ENTITY, "invalid_fields", {
                    // The detail stays readable; `errors` carries every one.
                    let shown: Vec<String> = errors.iter().take(10).map(ToString::to_string).collect();
                    let more = errors.len().saturating_sub(shown.len());
                    let tail = if more > 0 { format!(" ; … et {more} autre(s)") } else { String::new() };
                    format!("Champs invalides : {}{tail}.", shown.join(" ; "))
                });
                p.errors.clone_from(errors);
                p
            }
            Self::TooLarge => problem(
                S::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("Requête trop volumineuse : {} octets au plus.", repli_proto::MAX_BODY_BYTES),
            ),
            Self::MediaType => problem(
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Le corps de la requête doit être du JSON (Content-Type: application/json).".into(),
            ),
            Self::Store(e) => store_problem(e),
            Self::Internal(_) => internal(),
        }
    }
}

fn internal() -> Problem {
    problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "Erreur interne : l'équipe d'exploitation de la métropole a été prévenue par les journaux.".into(),
    )
}

fn store_problem(e: &StoreError) -> Problem {
    use StatusCode as S;
    match e {
        StoreError::UnknownCommune(c) => problem(
            S::NOT_FOUND,
            "unknown_commune",
            format!("Commune inconnue : aucune commune de la métropole n'a le code INSEE {c}."),
        ),
        StoreError::NoConvention(c) => problem(
            S::UNPROCESSABLE_ENTITY,
            "convention_missing",
            format!(
                "Convention non signée : la commune {c} n'a pas signé la convention de mise à disposition \
                 du kit de crise cyber. Contactez la métropole pour la signer."
            ),
        ),
        StoreError::OpenCrisis { commune, open } => {
            let mut p = problem(
                S::CONFLICT,
                "open_crisis_exists",
                format!(
                    "Une crise est déjà ouverte pour la commune {commune} : {open}. Suivez-la plutôt que d'en créer une autre."
                ),
            );
            p.open_crisis = Some(open.clone());
            p
        }
        StoreError::CrisisNotFound(_) => problem(S::NOT_FOUND, "crisis_not_found", "Crise introuvable.".into()),
        StoreError::Transition(t @ TransitionError::Illegal { from, .. }) => {
            let mut p = problem(S::CONFLICT, "illegal_transition", format!("{}.", capitalise(&t.to_string())));
            p.current_state = Some(*from);
            p
        }
        StoreError::Transition(t @ TransitionError::ReasonRequired { .. }) => {
            let mut p = problem(S::UNPROCESSABLE_ENTITY, "reason_required", format!("{}.", capitalise(&t.to_string())));
            p.errors.push(FieldError::new("reason", "un motif est obligatoire pour cette action"));
            p
        }
        StoreError::IdempotencyMismatch => problem(
            S::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "Cette clé d'idempotence a déjà servi pour une autre demande : utilisez une nouvelle clé.".into(),
        ),
        StoreError::CrisisEnded { id, state } => {
            let mut p = problem(
                S::CONFLICT,
                "crisis_ended",
                format!("La crise {id} est {} : sa main courante est fermée.", state.label_fr()),
            );
            p.current_state = Some(*state);
            p
        }
        StoreError::Sla { id, message } => problem(S::CONFLICT, "sla_conflict", format!("Crise {id} : {message}.")),
        StoreError::ItemsOutstanding { id, count } => problem(
            S::CONFLICT,
            "items_outstanding",
            format!(
                "La crise {id} ne peut pas être close : {count} équipement(s) non restitué(s). Enregistrez leur retour ou passez-les en perte avec un motif."
            ),
        ),
        StoreError::Import(errors) => {
            let mut p =
                problem(S::UNPROCESSABLE_ENTITY, "import_refused", "Import refusé : rien n'a été importé.".into());
            p.errors = errors.iter().map(|m| FieldError::new("csv", m.clone())).collect();
            p
        }
        StoreError::UnknownItem(s) => problem(S::NOT_FOUND, "unknown_item", format!("Équipement inconnu : {s}.")),
        StoreError::Item(msg) => problem(S::CONFLICT, "item_conflict", format!("{msg}.")),
        StoreError::Step(msg) => problem(S::CONFLICT, "step_conflict", format!("{}.", capitalise(msg))),
        StoreError::UnknownUser(_) => problem(S::NOT_FOUND, "unknown_user", "Utilisateur inconnu.".into()),
        StoreError::LoginTaken(_) => problem(S::CONFLICT, "login_taken", "Identifiant déjà utilisé.".into()),
        StoreError::Db(_) | StoreError::Migrate(_) | StoreError::Corrupt { .. } | StoreError::Chain(_) => internal(),
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map_or_else(String::new, |f| f.to_uppercase().chain(c).collect())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let p = self.to_problem();
        if p.status >= 500 {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::info!(code = %p.code, status = p.status, "request refused");
        }
        let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&p).unwrap_or_default();
        (status, [(header::CONTENT_TYPE, "application/problem+json")], body).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::MissingJsonContentType(_) => Self::MediaType,
            JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => Self::TooLarge,
            JsonRejection::JsonDataError(e) => Self::BadRequest {
                code: "invalid_json_field",
                // serde names the field: "contact.phone: invalid type…", "unknown field `x`…".
                detail: format!("Requête invalide : {}", strip_axum_prefix(&e.body_text())),
            },
            other => Self::BadRequest {
                code: "malformed_json",
                detail: format!("JSON mal formé : {}", strip_axum_prefix(&other.body_text())),
            },
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::BadRequest {
            code: "invalid_query",
            detail: format!("Paramètres invalides : {}", strip_axum_prefix(&r.body_text())),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        Self::NotFound { code: "not_found", detail: "Ressource introuvable.".into() }
    }
}

/// axum prefixes serde's message with an English sentence; keep serde's part, which names the
/// field, and bound its length.
fn strip_axum_prefix(s: &str) -> String {
    let s = s
        .strip_prefix("Failed to deserialize the JSON body into the target type: ")
        .or_else(|| s.strip_prefix("Failed to parse the request body as JSON: "))
        .or_else(|| s.strip_prefix("Failed to deserialize query string: "))
        .unwrap_or(s);
    s.chars().filter(|c| !c.is_control()).take(300).collect()
}
