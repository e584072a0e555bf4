//! The stable problem codes of the API, each with its HTTP status: the one table that maps an
//! error to what a client sees (`Problem::new`).

use serde::{Deserialize, Serialize};

use crate::api::Problem;

/// Every problem code replid answers with. On the wire it is a string (`Problem::code`), so a
/// client built before a new code still reads the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProblemCode {
    Unauthenticated,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    InvalidFields,
    PayloadTooLarge,
    UnsupportedMediaType,
    Internal,
    MalformedJson,
    InvalidJsonField,
    InvalidQuery,
    InvalidIdempotencyKey,
    UnknownCommune,
    ConventionMissing,
    OpenCrisisExists,
    CrisisNotFound,
    ExerciseNotFound,
    IllegalTransition,
    ReasonRequired,
    IdempotencyKeyReused,
    CrisisEnded,
    SlaConflict,
    ItemsOutstanding,
    ImportRefused,
    UnknownItem,
    ItemConflict,
    StepConflict,
    UnknownStep,
    UnknownUser,
    LoginTaken,
    UnknownAction,
    UnknownLegalClock,
    UnknownDocument,
    NoAccountsYet,
    CredentialSheetsIssued,
    HandbackInProgress,
    ReceptionIncomplete,
    /// The data hand-back's archive is not complete yet (409).
    HandbackArchiveNotReady,
    UriTooLong,
    HeadersTooLarge,
    NoCheckpoint,
    NotificationConflict,
    /// The disk holding the database is full: nothing of the request was kept (507).
    StorageFull,
    /// The database refused the write (I/O error, read-only, locked): nothing was kept (503).
    StorageUnavailable,
    /// The audit chain did not verify at start: replid serves reads, refuses writes (503).
    AuditChainBroken,
    /// Microsoft 365 refused the call for want of a grant (permission, role, policy): the detail
    /// names what to grant (502).
    M365Refused,
}

impl ProblemCode {
    pub const ALL: [ProblemCode; 46] = [
        Self::Unauthenticated,
        Self::Forbidden,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::InvalidFields,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::Internal,
        Self::MalformedJson,
        Self::InvalidJsonField,
        Self::InvalidQuery,
        Self::InvalidIdempotencyKey,
        Self::UnknownCommune,
        Self::ConventionMissing,
        Self::OpenCrisisExists,
        Self::CrisisNotFound,
        Self::ExerciseNotFound,
        Self::IllegalTransition,
        Self::ReasonRequired,
        Self::IdempotencyKeyReused,
        Self::CrisisEnded,
        Self::SlaConflict,
        Self::ItemsOutstanding,
        Self::ImportRefused,
        Self::UnknownItem,
        Self::ItemConflict,
        Self::StepConflict,
        Self::UnknownStep,
        Self::UnknownUser,
        Self::LoginTaken,
        Self::UnknownAction,
        Self::UnknownLegalClock,
        Self::UnknownDocument,
        Self::NoAccountsYet,
        Self::CredentialSheetsIssued,
        Self::HandbackInProgress,
        Self::ReceptionIncomplete,
        Self::HandbackArchiveNotReady,
        Self::UriTooLong,
        Self::HeadersTooLarge,
        Self::NoCheckpoint,
        Self::NotificationConflict,
        Self::StorageFull,
        Self::StorageUnavailable,
        Self::AuditChainBroken,
        Self::M365Refused,
    ];

    /// The stable string (`convention_missing`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::InvalidFields => "invalid_fields",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Internal => "internal",
            Self::MalformedJson => "malformed_json",
            Self::InvalidJsonField => "invalid_json_field",
            Self::InvalidQuery => "invalid_query",
            Self::InvalidIdempotencyKey => "invalid_idempotency_key",
            Self::UnknownCommune => "unknown_commune",
            Self::ConventionMissing => "convention_missing",
            Self::OpenCrisisExists => "open_crisis_exists",
            Self::CrisisNotFound => "crisis_not_found",
            Self::ExerciseNotFound => "exercise_not_found",
            Self::IllegalTransition => "illegal_transition",
            Self::ReasonRequired => "reason_required",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::CrisisEnded => "crisis_ended",
            Self::SlaConflict => "sla_conflict",
            Self::ItemsOutstanding => "items_outstanding",
            Self::ImportRefused => "import_refused",
            Self::UnknownItem => "unknown_item",
            Self::ItemConflict => "item_conflict",
            Self::StepConflict => "step_conflict",
            Self::UnknownStep => "unknown_step",
            Self::UnknownUser => "unknown_user",
            Self::LoginTaken => "login_taken",
            Self::UnknownAction => "unknown_action",
            Self::UnknownLegalClock => "unknown_legal_clock",
            Self::UnknownDocument => "unknown_document",
            Self::NoAccountsYet => "no_accounts_yet",
            Self::CredentialSheetsIssued => "credential_sheets_issued",
            Self::HandbackInProgress => "handback_in_progress",
            Self::ReceptionIncomplete => "reception_incomplete",
            Self::HandbackArchiveNotReady => "handback_archive_not_ready",
            Self::UriTooLong => "uri_too_long",
            Self::HeadersTooLarge => "headers_too_large",
            Self::NoCheckpoint => "no_checkpoint",
            Self::NotificationConflict => "notification_conflict",
            Self::StorageFull => "storage_full",
            Self::StorageUnavailable => "storage_unavailable",
            Self::AuditChainBroken => "audit_chain_broken",
            Self::M365Refused => "m365_refused",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The HTTP status this problem is answered with.
    pub fn status(self) -> u16 {
        match self {
            Self::MalformedJson | Self::InvalidJsonField | Self::InvalidQuery | Self::InvalidIdempotencyKey => 400,
            Self::Unauthenticated => 401,
            Self::Forbidden => 403,
            Self::NotFound
            | Self::UnknownCommune
            | Self::CrisisNotFound
            | Self::ExerciseNotFound
            | Self::UnknownItem
            | Self::UnknownStep
            | Self::UnknownUser
            | Self::UnknownAction
            | Self::UnknownLegalClock
            | Self::UnknownDocument => 404,
            Self::MethodNotAllowed => 405,
            Self::OpenCrisisExists
            | Self::IllegalTransition
            | Self::CrisisEnded
            | Self::SlaConflict
            | Self::ItemsOutstanding
            | Self::ItemConflict
            | Self::StepConflict
            | Self::LoginTaken
            | Self::NoAccountsYet
            | Self::CredentialSheetsIssued
            | Self::HandbackInProgress
            | Self::ReceptionIncomplete
            | Self::HandbackArchiveNotReady
            | Self::NoCheckpoint
            | Self::NotificationConflict => 409,
            Self::PayloadTooLarge => 413,
            Self::UriTooLong => 414,
            Self::HeadersTooLarge => 431,
            Self::UnsupportedMediaType => 415,
            Self::InvalidFields
            | Self::ConventionMissing
            | Self::ReasonRequired
            | Self::IdempotencyKeyReused
            | Self::ImportRefused => 422,
            Self::Internal => 500,
            Self::M365Refused => 502,
            Self::StorageUnavailable | Self::AuditChainBroken => 503,
            Self::StorageFull => 507,
        }
    }

    /// The status's reason phrase (the problem document's `title`).
    pub fn title(self) -> &'static str {
        match self.status() {
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            409 => "Conflict",
            413 => "Payload Too Large",
            414 => "URI Too Long",
            431 => "Request Header Fields Too Large",
            415 => "Unsupported Media Type",
            422 => "Unprocessable Entity",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            507 => "Insufficient Storage",
            _ => "Internal Server Error",
        }
    }
}

impl std::fmt::Display for ProblemCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Problem {
    /// A problem document for `code`, its status and title taken from the code.
    pub fn new(code: ProblemCode, detail: impl Into<String>) -> Self {
        Problem {
            type_: format!("urn:repli:problem:{code}"),
            title: code.title().to_owned(),
            status: code.status(),
            detail: detail.into(),
            code: code.as_str().to_owned(),
            errors: Vec::new(),
            current_state: None,
            open_crisis: None,
            // Set by replid where it sends the document (its `error.rs`).
            request_id: None,
        }
    }

    /// The code as the enum, when this client knows it.
    pub fn problem_code(&self) -> Option<ProblemCode> {
        ProblemCode::parse(&self.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_have_error_statuses() {
        for c in ProblemCode::ALL {
            assert_eq!(ProblemCode::parse(c.as_str()), Some(c));
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
            assert!((400..600).contains(&c.status()), "{c}");
            let p = Problem::new(c, "x");
            assert_eq!((p.status, p.problem_code()), (c.status(), Some(c)));
        }
    }
}
