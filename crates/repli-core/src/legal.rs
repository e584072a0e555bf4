//! Legal clocks the commune runs against, in calendar hours from the moment it became aware of
//! the attack: the CNIL notification of a personal-data breach (RGPD art. 33) and the complaint
//! the cyber-insurance requires (Code des assurances L12-10-1), both within 72 hours.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// Both deadlines are 72 calendar hours.
pub const LEGAL_HOURS: i64 = 72;
/// Reminders are due when this much time is left.
pub const REMINDERS_HOURS: [i64; 2] = [24, 6];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LegalKind {
    /// Notification to the CNIL (RGPD art. 33), when personal data is involved.
    Cnil,
    /// Complaint to the police or gendarmerie (Code des assurances L12-10-1).
    Complaint,
}

impl LegalKind {
    pub const ALL: [LegalKind; 2] = [Self::Cnil, Self::Complaint];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cnil => "cnil",
            Self::Complaint => "complaint",
        }
    }

    pub fn label_fr(self) -> &'static str {
        match self {
            Self::Cnil => "Notification à la CNIL (RGPD art. 33)",
            Self::Complaint => "Dépôt de plainte (assurance cyber, art. L12-10-1 du Code des assurances)",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LegalStatus {
    /// Running.
    Pending,
    /// Done in time.
    Done,
    /// Done after the deadline.
    DoneLate,
    /// Past the deadline, not done.
    Overdue,
    /// Whether personal data is involved is not known yet (CNIL only).
    ToDetermine,
    /// No personal data involved (CNIL only).
    NotRequired,
}

impl LegalStatus {
    /// What the status says to people, in French (`remaining`: calendar time left, for a
    /// clock still running).
    pub fn label_fr(self, remaining: jiff::SignedDuration) -> String {
        match self {
            Self::Pending => format!("en cours — reste {}", crate::fr::duration(remaining)),
            Self::Done => "fait".into(),
            Self::DoneLate => "fait hors délai".into(),
            Self::Overdue => "DÉPASSÉE".into(),
            Self::ToDetermine => "données personnelles : à déterminer".into(),
            Self::NotRequired => "sans objet".into(),
        }
    }
}

/// One legal clock at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegalClock {
    pub kind: LegalKind,
    pub deadline: Timestamp,
    pub done_at: Option<Timestamp>,
    pub status: LegalStatus,
    /// Calendar time left (zero once done or past).
    pub remaining: SignedDuration,
}

/// The legal clocks of a crisis whose commune became aware of the attack at `aware_at`.
pub fn clocks(
    aware_at: Timestamp,
    personal_data: Option<bool>,
    cnil_done: Option<Timestamp>,
    complaint_done: Option<Timestamp>,
    now: Timestamp,
) -> Vec<LegalClock> {
    let deadline = aware_at.checked_add(SignedDuration::from_hours(LEGAL_HOURS)).unwrap_or(aware_at);
    let one = |kind, done_at: Option<Timestamp>, applies: Option<bool>| {
        let status = match (applies, done_at) {
            (Some(false), _) => LegalStatus::NotRequired,
            (_, Some(d)) if d <= deadline => LegalStatus::Done,
            (_, Some(_)) => LegalStatus::DoneLate,
            (_, None) if now > deadline => LegalStatus::Overdue,
            (None, None) => LegalStatus::ToDetermine,
            (Some(true), None) => LegalStatus::Pending,
        };
        let remaining = if matches!(status, LegalStatus::Pending | LegalStatus::ToDetermine) {
            deadline.duration_since(now).max(SignedDuration::ZERO)
        } else {
            SignedDuration::ZERO
        };
        LegalClock { kind, deadline, done_at, status, remaining }
    };
    vec![one(LegalKind::Cnil, cnil_done, personal_data), one(LegalKind::Complaint, complaint_done, Some(true))]
}

/// The reminder thresholds (hours left) a clock has crossed at `now`, for notifications.
pub fn reminders_due(c: &LegalClock) -> Vec<i64> {
    if !matches!(c.status, LegalStatus::Pending | LegalStatus::ToDetermine) {
        return Vec::new();
    }
    REMINDERS_HOURS.iter().copied().filter(|h| c.remaining <= SignedDuration::from_hours(*h)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn deadlines_are_72_calendar_hours() {
        // Aware on Friday evening: the weekend counts.
        let c = clocks(t("2026-11-20T19:00:00Z"), Some(true), None, None, t("2026-11-21T19:00:00Z"));
        assert_eq!(c[0].deadline, t("2026-11-23T19:00:00Z"));
        assert_eq!((c[0].status, c[0].remaining), (LegalStatus::Pending, SignedDuration::from_hours(48)));
        assert!(reminders_due(&c[0]).is_empty());
        let c = clocks(
            t("2026-11-20T19:00:00Z"),
            Some(true),
            None,
            Some(t("2026-11-21T10:00:00Z")),
            t("2026-11-23T14:00:00Z"),
        );
        assert_eq!(reminders_due(&c[0]), vec![24, 6]);
        assert_eq!(c[1].status, LegalStatus::Done);
        let c = clocks(t("2026-11-20T19:00:00Z"), None, None, None, t("2026-11-24T00:00:00Z"));
        assert_eq!((c[0].status, c[1].status), (LegalStatus::Overdue, LegalStatus::Overdue));
        let c = clocks(
            t("2026-11-20T19:00:00Z"),
            Some(false),
            None,
            Some(t("2026-11-24T00:00:00Z")),
            t("2026-11-25T00:00:00Z"),
        );
        assert_eq!((c[0].status, c[1].status), (LegalStatus::NotRequired, LegalStatus::DoneLate));
        let c = clocks(t("2026-11-20T19:00:00Z"), None, None, None, t("2026-11-21T00:00:00Z"));
        assert_eq!(c[0].status, LegalStatus::ToDetermine);
    }
}
