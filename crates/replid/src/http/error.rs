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
            // serde names the field ("contact.phone: invalid type…"): said again in French.
            JsonRejection::JsonDataError(e) => {
                tracing::info!(error = %e.body_text(), "JSON body does not match");
                Self::problem(
                    ProblemCode::InvalidJsonField,
                    format!("Requête invalide : {}", serde_fr(strip_axum_prefix(&e.body_text()).as_str())),
                )
            }
            other => {
                tracing::info!(error = %other.body_text(), "malformed JSON body");
                Self::problem(
                    ProblemCode::MalformedJson,
                    "JSON mal formé : le corps de la requête n'est pas un document JSON complet.",
                )
            }
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        tracing::info!(error = %r.body_text(), "query string does not match");
        Self::problem(
            ProblemCode::InvalidQuery,
            format!("Paramètres invalides : {}", serde_fr(strip_axum_prefix(&r.body_text()).as_str())),
        )
    }
}

/// serde's English message in French, for people: the field's path (ours, or the caller's
/// when it is an identifier: « champ inconnu : colour »), what is wrong with it, and the values
/// a field of ours takes; never the value sent, nor serde's own words. A message that is not
/// serde's (our validators', already French) is kept, without its « at line … ».
fn serde_fr(s: &str) -> String {
    let s = s.split(" at line ").next().unwrap_or(s);
    // A list or a number where the body is an object: said as such, not as its length.
    let at_root = s.starts_with("invalid type") || s.starts_with("invalid length");
    if at_root && (s.contains("expected struct") || s.contains("expected a map")) {
        return "un objet JSON est attendu.".to_owned();
    }
    const KINDS: [(&str, &str); 8] = [
        ("missing field `", "champ manquant"),
        ("unknown field `", "champ inconnu"),
        ("duplicate field `", "champ en double"),
        ("unknown variant `", "valeur inconnue"),
        ("invalid type: ", "type de valeur invalide"),
        ("invalid value: ", "valeur invalide"),
        ("invalid length ", "nombre d'éléments invalide"),
        ("expected ", "valeur invalide"),
    ];
    let found = KINDS.iter().filter_map(|(en, fr)| s.find(en).map(|i| (i, *en, *fr))).min_by_key(|(i, _, _)| *i);
    let Some((at, en, fr)) = found else { return s.to_owned() };
    let path = s[..at].trim_end().trim_end_matches(':').trim();
    let rest = &s[at + en.len()..];
    // The field named in backticks, when the message names one and it is an identifier.
    let named = en
        .ends_with('`')
        .then(|| rest.split('`').next().unwrap_or(""))
        .filter(|n| !n.is_empty() && n.len() <= 40 && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    let field = match (path, named) {
        ("" | ".", Some(n)) if en != "unknown variant `" => n.to_owned(),
        (p, Some(n)) if en != "unknown variant `" => format!("{p}.{n}"),
        ("" | ".", _) => String::new(),
        (p, _) => p.to_owned(),
    };
    let field_ok = field.len() <= 80 && field.chars().all(|c| c.is_ascii_alphanumeric() || "_.[]".contains(c));
    let mut out = fr.to_owned();
    if !field.is_empty() && field_ok {
        out.push_str(&format!(" : {field}"));
    }
    // The values a field of ours takes (`expected one of `a`, `b``): our words, not the caller's.
    if let Some(one_of) = s.split("expected one of ").nth(1).filter(|_| en != "unknown field `") {
        let values: Vec<&str> = one_of.split('`').skip(1).step_by(2).collect();
        if !values.is_empty()
            && values.iter().all(|v| v.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)))
        {
            out.push_str(&format!(" (valeurs possibles : {})", values.join(", ")));
        }
    }
    out.push('.');
    out
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

#[cfg(test)]
mod tests {
    use super::serde_fr;

    #[test]
    fn serde_messages_are_said_in_french_without_the_value_sent() {
        let cases = [
            ("unknown field `colour`, expected one of `commune`, `contact`", "champ inconnu : colour."),
            ("contact: unknown field `fax`, expected `name` or `phone`", "champ inconnu : contact.fax."),
            ("missing field `contact` at line 1 column 30", "champ manquant : contact."),
            (
                "agents: invalid type: string \"many\", expected u32 at line 1 column 70",
                "type de valeur invalide : agents.",
            ),
            (
                "kind: unknown variant `Appelez le 0899`, expected one of `laptop`, `router`",
                "valeur inconnue : kind (valeurs possibles : laptop, router).",
            ),
            ("unknown field `Appelez le 08 99`, expected one of `a`", "champ inconnu."),
            ("invalid type: map, expected a sequence", "type de valeur invalide."),
            ("invalid length 0, expected struct CrisisRequest with 6 elements", "un objet JSON est attendu."),
            ("invalid type: integer `3`, expected struct CrisisRequest", "un objet JSON est attendu."),
            (
                "commune: « 1300 » n'est pas un code INSEE de commune at line 1 column 19",
                "commune: « 1300 » n'est pas un code INSEE de commune",
            ),
        ];
        for (en, fr) in cases {
            assert_eq!(serde_fr(en), fr, "{en}");
        }
    }
}
