//! The one error of every operation, with the stable problem code a client sees. `detail` is
//! French (a DGS may read it); internal causes are logged, never sent. replid turns it into an
//! HTTP response in one place (`replid::error`).

use repli_core::{FieldError, TransitionError};
use repli_proto::ProblemCode;
use repli_proto::api::Problem;
use repli_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("authentication required")]
    Unauthenticated,
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// A refusal with its code (the code gives the HTTP status).
    #[error("{code}: {detail}")]
    Problem { code: ProblemCode, detail: String },
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

impl AppError {
    pub fn crisis_not_found() -> Self {
        Self::Problem { code: ProblemCode::CrisisNotFound, detail: "Crise introuvable.".into() }
    }

    /// A refusal with its code.
    pub fn problem(code: ProblemCode, detail: impl Into<String>) -> Self {
        Self::Problem { code, detail: detail.into() }
    }
}

fn problem(code: ProblemCode, detail: String) -> Problem {
    Problem::new(code, detail)
}

impl AppError {
    pub fn to_problem(&self) -> Problem {
        match self {
            Self::Unauthenticated => problem(
                ProblemCode::Unauthenticated,
                "Authentification requise : jeton absent, invalide, expiré ou révoqué.".into(),
            ),
            Self::Forbidden(why) => problem(ProblemCode::Forbidden, (*why).to_owned()),
            Self::Problem { code, detail } => problem(*code, detail.clone()),
            Self::Validation(errors) => {
                let mut p = problem(ProblemCode::InvalidFields, {
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
                ProblemCode::PayloadTooLarge,
                format!("Requête trop volumineuse : {} octets au plus.", repli_proto::MAX_BODY_BYTES),
            ),
            Self::MediaType => problem(
                ProblemCode::UnsupportedMediaType,
                "Le corps de la requête doit être du JSON (Content-Type: application/json).".into(),
            ),
            Self::Store(e) => store_problem(e),
            Self::Internal(_) => internal(),
        }
    }
}

fn internal() -> Problem {
    problem(
        ProblemCode::Internal,
        "Erreur interne : l'équipe d'exploitation de la métropole a été prévenue par les journaux.".into(),
    )
}

fn store_problem(e: &StoreError) -> Problem {
    match e {
        StoreError::UnknownCommune(c) => problem(
            ProblemCode::UnknownCommune,
            format!("Commune inconnue : aucune commune de la métropole n'a le code INSEE {c}."),
        ),
        StoreError::NoConvention(c) => problem(
            ProblemCode::ConventionMissing,
            format!(
                "Convention non signée : la commune {c} n'a pas signé la convention de mise à disposition \
                 du kit de crise cyber. Contactez la métropole pour la signer."
            ),
        ),
        StoreError::OpenCrisis { commune, open } => {
            let mut p = problem(
                ProblemCode::OpenCrisisExists,
                format!(
                    "Une crise est déjà ouverte pour la commune {commune} : {open}. Suivez-la plutôt que d'en créer une autre."
                ),
            );
            p.open_crisis = Some(open.clone());
            p
        }
        StoreError::CrisisNotFound(_) => problem(ProblemCode::CrisisNotFound, "Crise introuvable.".into()),
        StoreError::Transition(t @ TransitionError::Illegal { from, .. }) => {
            let mut p = problem(ProblemCode::IllegalTransition, format!("{}.", capitalise(&t.to_string())));
            p.current_state = Some(*from);
            p
        }
        StoreError::Transition(t @ TransitionError::ReasonRequired { .. }) => {
            let mut p = problem(ProblemCode::ReasonRequired, format!("{}.", capitalise(&t.to_string())));
            p.errors.push(FieldError::new("reason", "un motif est obligatoire pour cette action"));
            p
        }
        StoreError::IdempotencyMismatch => problem(
            ProblemCode::IdempotencyKeyReused,
            "Cette clé d'idempotence a déjà servi pour une autre demande : utilisez une nouvelle clé.".into(),
        ),
        StoreError::CrisisEnded { id, state } => {
            let mut p = problem(
                ProblemCode::CrisisEnded,
                format!("La crise {id} est {} : sa main courante est fermée.", state.label_fr()),
            );
            p.current_state = Some(*state);
            p
        }
        StoreError::Sla { id, message } => problem(ProblemCode::SlaConflict, format!("Crise {id} : {message}.")),
        StoreError::ItemsOutstanding { id, count } => problem(
            ProblemCode::ItemsOutstanding,
            format!(
                "La crise {id} ne peut pas être close : {count} équipement(s) non restitué(s). Enregistrez leur retour ou passez-les en perte avec un motif."
            ),
        ),
        StoreError::ReceptionIncomplete { id, out, unwiped } => {
            let list = |tags: &[String]| {
                let shown: Vec<&str> = tags.iter().take(10).map(String::as_str).collect();
                let more = tags.len().saturating_sub(shown.len());
                if more > 0 { format!("{} et {more} autre(s)", shown.join(", ")) } else { shown.join(", ") }
            };
            let mut why = Vec::new();
            if !out.is_empty() {
                why.push(format!(
                    "{} équipement(s) encore prêté(s) ({}) : enregistrez leur retour ou passez-les en perte avec un motif",
                    out.len(),
                    list(out)
                ));
            }
            if !unwiped.is_empty() {
                why.push(format!(
                    "{} portable(s) ou téléphone(s) rendu(s) sans effacement certifié ({}) : enregistrez l'effacement",
                    unwiped.len(),
                    list(unwiped)
                ));
            }
            problem(
                ProblemCode::ReceptionIncomplete,
                format!(
                    "La réception des équipements de la crise {id} ne peut pas être confirmée : {}. Les comptes et le domaine ne seront supprimés qu'après.",
                    why.join(" ; ")
                ),
            )
        }
        StoreError::Import(errors) => {
            let mut p = problem(ProblemCode::ImportRefused, "Import refusé : rien n'a été importé.".into());
            p.errors = errors.iter().map(|m| FieldError::new("csv", m.clone())).collect();
            p
        }
        StoreError::UnknownItem(s) => problem(ProblemCode::UnknownItem, format!("Équipement inconnu : {s}.")),
        StoreError::Item(msg) => problem(ProblemCode::ItemConflict, format!("{msg}.")),
        StoreError::Step(msg) => problem(ProblemCode::StepConflict, format!("{}.", capitalise(msg))),
        StoreError::UnknownUser(_) => problem(ProblemCode::UnknownUser, "Utilisateur inconnu.".into()),
        StoreError::LoginTaken(_) => problem(ProblemCode::LoginTaken, "Identifiant déjà utilisé.".into()),
        StoreError::Db(_) | StoreError::Migrate(_) | StoreError::Corrupt { .. } | StoreError::Chain(_) => internal(),
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map_or_else(String::new, |f| f.to_uppercase().chain(c).collect())
}
