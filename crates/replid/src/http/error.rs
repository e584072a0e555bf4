//! The HTTP side of [`AppError`]: status and `application/problem+json` in one place, and
//! axum's rejections turned into the same coded errors.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use repli_app::AppError;
use repli_proto::ProblemCode;

/// An [`AppError`] on its way to the client.
#[derive(Debug)]
pub struct ApiError(pub AppError);

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        ApiError(e)
    }
}

impl ApiError {
    pub fn problem(code: ProblemCode, detail: impl Into<String>) -> Self {
        ApiError(AppError::problem(code, detail))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut p = self.0.to_problem();
        p.request_id = crate::http::request_id::current();
        if p.status >= 500 {
            tracing::error!(error = %self.0, "request failed");
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
            JsonRejection::MissingJsonContentType(_) => ApiError(AppError::MediaType),
            JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError(AppError::TooLarge)
            }
            // serde names the field: "contact.phone: invalid type…", "unknown field `x`…".
            JsonRejection::JsonDataError(e) => Self::problem(
                ProblemCode::InvalidJsonField,
                format!("Requête invalide : {}", strip_axum_prefix(&e.body_text())),
            ),
            other => Self::problem(
                ProblemCode::MalformedJson,
                format!("JSON mal formé : {}", strip_axum_prefix(&other.body_text())),
            ),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::problem(
            ProblemCode::InvalidQuery,
            format!("Paramètres invalides : {}", strip_axum_prefix(&r.body_text())),
        )
    }
}

impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        Self::problem(ProblemCode::NotFound, "Ressource introuvable.")
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
